"""What both studies and the paper share: atomic file writes (``common.io``) and run provenance
(``common.provenance``)."""
