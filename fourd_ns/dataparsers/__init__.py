"""Dataparsers of fourd_ns. The entry-point module is ``specs`` and must stay import-light."""
