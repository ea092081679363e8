"""Every exception a user of the library can see; each message names the fix."""
from __future__ import annotations


class RagError(Exception):
    """Base class: a problem the user can act on. The message is one line and says how."""


class DocumentError(RagError):
    """A document could not be read: missing, empty, binary, too large, or undecodable."""


class IndexNotFoundError(RagError):
    """No index exists at the given folder."""


class IndexCorruptError(RagError):
    """The index on disk is damaged (truncated, altered, or unreadable files)."""


class IndexStaleError(RagError):
    """The index was built with settings or a format this version cannot use as it is."""


class IndexLockedError(RagError):
    """Another process is writing the same index."""


class QuestionError(RagError):
    """The question cannot be asked: empty, too long, or not text."""


class ConfigError(RagError):
    """A setting is invalid: an unknown model path, a bad chunk size."""


class ClusterError(RagError):
    """A Ray cluster could not be reached, or work on it failed (the previous index is kept)."""


class NotPdfError(RagError):
    """A page image was asked of a citation whose source is not a PDF (it has no pages to show)."""
