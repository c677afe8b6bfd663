"""Analysis of PL-DC pseudo-label records: pure functions over tables, plus plotly figures."""
