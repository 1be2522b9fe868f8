"""The contract every cardstream service shares.

Transaction models and parsers, PAN tokenization, JWT verification, settings, logging and
redaction, metrics and AWS client construction.
"""
