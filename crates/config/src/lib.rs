//! gatehouse-config
