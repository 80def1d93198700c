"""A Pygments lexer for .cnn specs, registered as the entry point `cnnspec` (aliases
`cnn`, `cnnspec`), so Sphinx, MkDocs and anything else that uses Pygments colours
```cnn blocks. The word lists come from the layer kinds themselves."""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text, Whitespace

from ..kinds import ACTIVATIONS, KINDS

STRUCTURE = ("network", "block", "use", "repeat", "drop", "freeze", "output", "input")
PREPOSITIONS = ("from", "as", "through", "last", "all", "shortcut", "in")
COMBINATORS = ("residual", "split")
LAYERS = tuple(sorted(set(KINDS) - set(ACTIVATIONS)))
WORDS = (
    "max",
    "avg",
    "same",
    "valid",
    "nearest",
    "bilinear",
    "ceil",
    "count_pad",
    "shared",
    "end",
    "zero",
    "reflect",
    "edge",
    "true",
    "false",
)


class CnnspecLexer(RegexLexer):
    name = "cnnspec"
    aliases = ["cnn", "cnnspec"]
    filenames = ["*.cnn"]
    mimetypes = ["text/x-cnnspec"]

    tokens = {
        "root": [
            (r"[ \t]+", Whitespace),
            (r"\r\n|\r|\n", Whitespace),  # CR, LF and CRLF each end a line, as the parser counts
            (r"#[^\r\n]*", Comment.Single),
            (r'"[^"\n]*"', String),
            (words(STRUCTURE, suffix=r"\b"), Keyword.Declaration),
            (words(PREPOSITIONS, suffix=r"\b"), Keyword),
            (words(COMBINATORS + LAYERS, suffix=r"\b"), Name.Builtin),
            (words(ACTIVATIONS, suffix=r"\b"), Name.Function),
            (words(WORDS, suffix=r"\b"), Name.Constant),
            (r"([A-Za-z_]\w*)(\s*)(=)", bygroups(Name.Attribute, Whitespace, Operator)),
            (r"\d+(x\d+)+\b", Number),  # sizes: 3x3, 3x224x224
            (r"\d+\.\d*([eE][-+]?\d+)?|\d+[eE][-+]?\d+|\.\d+", Number.Float),
            (r"\d+", Number.Integer),
            (r"->|//|[-+*=:]", Operator),
            (r"[{}();,\[\]]", Punctuation),
            (r"[A-Za-z_]\w*", Name),
            (r".", Text),
        ]
    }
