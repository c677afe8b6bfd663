"""PL-DC training engine: Mask2Former teacher-student with DDTF, DICC and PMUA."""

__version__ = "0.1.0"
