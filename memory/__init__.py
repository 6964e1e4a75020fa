"""Memory: every candidate of every run in one persistent Chroma store, searchable by meaning, code
and behaviour, with the novelty gate the check step runs before anything expensive.

  records.py     CandidateRecord, the DESIGN contract of a candidate
  store.py       MemoryStore: record, get, search, top_by_score, recent_failures, novelty, export
  embeddings.py  text embedders: offline MiniLM (hash-checked) or an OpenAI-compatible endpoint
  novelty.py     the gate's thresholds and verdict
  archive.py     DiscoPOP / ADAS / disco JSONL archives

Target-specific behavioural fingerprints live with their target (targets/dpo/fingerprint.py).
"""
