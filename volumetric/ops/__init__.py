"""Operations: each one a library function that the ``vol`` CLI calls."""
