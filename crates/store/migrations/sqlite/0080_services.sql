-- Issue 7: services with a lifecycle and immutable releases; app subscriptions.
-- spec / live_spec: JSON documents as TEXT (see crates/store/src/services.rs).
CREATE TABLE services (
    id            TEXT PRIMARY KEY NOT NULL,
    team_id       TEXT NOT NULL REFERENCES teams(id),
    kind          TEXT NOT NULL,
    slug          TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,
    visibility    TEXT NOT NULL,
    approval      TEXT NOT NULL,
    spec          TEXT NOT NULL,
    live_spec     TEXT,
    version       INTEGER NOT NULL DEFAULT 0,
    deprecated_at INTEGER,
    sunset_at     INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX services_team ON services (team_id, created_at);

CREATE TABLE service_releases (
    id          TEXT PRIMARY KEY NOT NULL,
    service_id  TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    spec        TEXT NOT NULL,
    note        TEXT NOT NULL,
    created_by  TEXT,
    created_at  INTEGER NOT NULL,
    UNIQUE (service_id, version)
);

CREATE TABLE subscriptions (
    id          TEXT PRIMARY KEY NOT NULL,
    app_id      TEXT NOT NULL REFERENCES apps(id),
    service_id  TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    status      TEXT NOT NULL,
    reason      TEXT,
    decided_by  TEXT,
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
-- At most one open (pending or active) subscription per app and service.
CREATE UNIQUE INDEX subscriptions_open ON subscriptions (app_id, service_id)
    WHERE status IN ('pending', 'active');
CREATE INDEX subscriptions_service ON subscriptions (service_id, created_at);

