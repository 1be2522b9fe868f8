"""The contract every cardstream service shares.

Transaction models and the decoding doors (``transaction_input`` for what merchants send,
``stream_records`` for what travels through the stream), PAN tokenization, JWT
verification, settings, logging and redaction, metrics and AWS client construction.
"""
