"""The Python API: stage calls (`stages`, `teachers`), object-level calls (`objects`), typed results (`results`),
strict argument checks (`validate`).

Use it as `import edgedistill as ed; ed.train(...)`; `edgedistill/__init__.py` re-exports these names lazily.
"""
