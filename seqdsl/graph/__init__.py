"""The checked graph as plain data: the IR (`ir`), symbolic dims (`symbolic`),
and renderings of a graph (`render`: summary, dot, mermaid, json)."""
