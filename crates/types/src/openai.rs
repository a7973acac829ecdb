//! OpenAI-compatible wire types (owned by the providers work; see wire-formats.md §1).
