"""Dataset preparation: full-body, face and shoe training sets from photos and label maps (``prepare``),
label maps and shoe components (``labels``), face boxes and crop windows (``windows``), and reading a
prepared set (``dataset``)."""
