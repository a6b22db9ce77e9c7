"""Visual Question Answering with hierarchical co-attention."""
