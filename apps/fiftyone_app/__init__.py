"""`pldc fiftyone`: a FiftyOne dataset of a run's pseudo-labels, and the mask decoding it needs."""
