"""Fault injection: both backends as separate processes, a breakable proxy between them."""
