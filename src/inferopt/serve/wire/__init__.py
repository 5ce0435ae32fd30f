"""Request and response bodies of each protocol, parsed and built by hand (orjson), with no web framework:
so that `inferopt profile` runs the server's own codec in-process, and each error names its exact field."""
