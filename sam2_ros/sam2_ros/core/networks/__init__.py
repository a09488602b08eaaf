"""The networks of every model family the node runs (one module each) and the parts they share.

`registry` lists the families; `model.py` loads through it.
"""
