"""A studio's configuration: one validated document per version (`schema`), drafts, publishing, rollback and diffs
(`versions`), proposals from API keys (`proposals`), package display (`display`) and the theme (`theme`)."""
from portal.services.configuration.schema import FONTS, InvalidConfig
from portal.services.configuration.versions import (
    create_draft,
    diff,
    discard,
    document_of,
    get_version,
    open_drafts,
    publish,
    rollback,
    start,
    update_draft,
    versions,
)
from portal.services.errors import NotFound

__all__ = ["FONTS", "InvalidConfig", "NotFound", "create_draft", "diff", "discard", "document_of", "get_version",
           "open_drafts", "publish", "rollback", "start", "update_draft", "versions"]
