"""The plotly figures of the analyses, one module per analysis: the report and the app draw with the same ones.

Each builder only draws the data an analysis returned. They share one look (``style``): every axis
says what it measures and in what unit (AP and shares in %), an empty figure says why in its middle,
legends stay clear of the plot, its axis titles and colour bars, hover text spells out abbreviations.
``workbench.png.write_png`` draws any of them as a PNG.
"""
