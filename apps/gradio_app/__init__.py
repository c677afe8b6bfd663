"""`pldc app`: the Gradio workbench (build_demo), one module per tab, and the backends only it uses."""
