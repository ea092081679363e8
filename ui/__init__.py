"""A browser interface for `rag`: chat with cited sources, upload documents, a JSON /ask endpoint.

Gradio is imported only by `ui.app`, so `import ui` stays light.
"""
