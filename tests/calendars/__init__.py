"""Calendar provider tests (a package, so module names never clash with other folders)."""
