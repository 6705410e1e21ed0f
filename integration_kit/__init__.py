"""Shared runtime of both backends: auth, problem+json, database, outbox, dispatcher, inbound rules.

Written once and imported by `tma_impl` and `crm_impl`; it imports neither of them.
"""
