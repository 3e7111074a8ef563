//! gabang-content: the content store.
