"""lok's tests: a package, so helpers import as `tests.lokrun`, `tests.servers.llm`, …"""
