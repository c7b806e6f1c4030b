"""Experiments behind the book's measured claims; run them with ``python -m ropebook.experiments <name> ...``.

``compare``: ``TinyLM`` with each position scheme on the same data (``runner``), chapter ``ch-crope``.
``lrpe-recall``: LRPE members on a recall task (``lrpe_recall``), chapter ``ch-linear-attention``.
"""
