# typed contract: written by the static-checking work
