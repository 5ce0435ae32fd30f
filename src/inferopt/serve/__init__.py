"""`inferopt serve`: an artifact behind an OpenAI-compatible HTTP API.

The request path, one module per stage: schemas (parse and validate) -> service (cache tiers, single-flight,
tokenize) -> batcher (micro-batches over N runtime workers) -> app (JSON out, timing headers). Nothing here
is imported by `import inferopt`; fastapi, starlette and uvicorn are imported only inside this package.
"""
