"""The loader: reading a source's file and writing it into the warehouse database."""
