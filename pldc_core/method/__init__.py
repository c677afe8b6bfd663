"""The PL-DC method: Eq. 3-10 as pure functions, DICC's CLIP classifier, the teacher step."""
