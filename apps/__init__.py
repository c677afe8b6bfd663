"""Thin front ends (Gradio app, FiftyOne integration) over pldc_core and workbench."""
