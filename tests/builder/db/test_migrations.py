"""The Alembic migrations: upgrade from empty, keep existing triggers' settings, downgrade cleanly."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from builder.db.engine import alembic_config, make_engine
from builder.db.models import Base


def test_upgrade_moves_a_triggers_dockerfile_into_default_rules_and_downgrade_restores_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0001")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO triggers (provider, repository, clone_url, secret_enc, image, dockerfile, context, "
            "default_branch, enabled, created_at) VALUES ('github', 'a/b', 'file:///x', 'tok', 'a/b', "
            "'docker/Dockerfile', 'docker', 'main', 1, '2026-01-01 00:00:00')"))
    engine.dispose()

    command.upgrade(config, "head")
    with engine.begin() as conn:
        rules = conn.execute(sa.text(
            "SELECT position, source, pattern, dockerfile, context, tags FROM trigger_rules ORDER BY position"
        )).fetchall()
    assert [tuple(r[:5]) for r in rules] == [
        (0, "branch", "*", "docker/Dockerfile", "docker"),
        (1, "tag", "*", "docker/Dockerfile", "docker"),
    ]

    command.downgrade(config, "0001")
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT dockerfile, context FROM triggers")).fetchall() == [
            ("docker/Dockerfile", "docker")]
    engine.dispose()


def test_the_migrated_schema_matches_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    inspector = sa.inspect(engine)
    for table in Base.metadata.sorted_tables:
        migrated = {column["name"] for column in inspector.get_columns(table.name)}
        assert migrated == {column.name for column in table.columns}, table.name
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def test_0008_adds_the_secret_build_args_column_and_downgrade_drops_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0007")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO triggers (provider, repository, clone_url, secret_enc, image, default_branch, enabled, "
            "supersede, created_at) VALUES ('github', 'a/b', 'file:///x', 'tok', 'a/b', 'main', 1, 1, "
            "'2026-01-01 00:00:00')"))
        conn.execute(sa.text(
            "INSERT INTO trigger_rules (trigger_id, position, source, match, pattern, dockerfile, context, "
            "build_args, tags, included_files, ignored_files) VALUES (1, 0, 'branch', 'glob', '*', 'Dockerfile', "
            "'.', '{}', '[\"{branch}\"]', '[]', '[]')"))
    engine.dispose()

    command.upgrade(config, "0008")
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT pattern, secret_build_args_enc FROM trigger_rules")).fetchall() == [
            ("*", None)]
        conn.execute(sa.text("UPDATE trigger_rules SET secret_build_args_enc = '{\"A\": \"sealed\"}'"))
    command.downgrade(config, "0007")
    columns = {column["name"] for column in sa.inspect(engine).get_columns("trigger_rules")}
    assert "secret_build_args_enc" not in columns and "pattern" in columns
    engine.dispose()


def test_0009_gives_deploy_rules_a_registry_and_older_rules_deploy_from_buildhook_registry(tmp_path):
    from builder.db.engine import make_sessionmaker
    from builder.deploys.deployments import receive_registry_events
    from builder.db.models import Deployment, DeployRule
    from builder.registries import ImagePushed
    from builder.settings import Settings

    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0008")
    engine = make_engine(url)
    with engine.begin() as conn:  # a rule made before rules named their registry
        conn.execute(sa.text(
            "INSERT INTO deploy_rules (repository, tag_match, tag_pattern, environment, enabled, created_at) "
            "VALUES ('acme/widget', 'exact', 'main', 'staging', 1, '2026-01-01 00:00:00')"))
        conn.execute(sa.text(
            "INSERT INTO deploy_targets (rule_id, kind, url) VALUES (1, 'webhook', 'http://127.0.0.1:9')"))
    command.upgrade(alembic_config(url, "k"), "head")  # models are at head: so must the schema be
    settings = Settings(database_url=url, secret_key="k", registry="registry.example.com:5000")
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        assert session.get(DeployRule, 1).registry_host is None

    def pushed(event_id: str, registry: str) -> ImagePushed:
        return ImagePushed(source="distribution", event_id=event_id, registry=registry, repository="acme/widget",
                           tag="main", digest=None, media_type=None, pushed_at=None, actor=None)

    ours = receive_registry_events(sessions, "distribution", [pushed("1", "registry.example.com:5000")], settings)
    theirs = receive_registry_events(sessions, "distribution", [pushed("2", "evil.example:5000")], settings)
    assert (len(ours.deployments), theirs.deployments, theirs.ignored) == (1, [], 1)
    with sessions() as session:
        assert session.get(Deployment, ours.deployments[0]).registry_host == "registry.example.com:5000"
    command.downgrade(alembic_config(url, "k"), "0008")
    assert "registry_host" not in {column["name"] for column in sa.inspect(engine).get_columns("deploy_rules")}
    engine.dispose()


def test_0011_seals_stored_outbound_urls_and_downgrade_opens_them(tmp_path):
    import pytest

    from builder.secrets import SecretBox

    url = f"sqlite:///{tmp_path / 'm.db'}"
    slack = "https://hooks.slack.com/services/T0/B0/SlackPathSecret123"
    deploy = "https://robot:pa55word@deploy.example.com/hook?token=tok123"
    command.upgrade(alembic_config(url), "0008")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO subscriptions (url, events, style, enabled, created_at) "
            "VALUES (:url, '[\"*\"]', 'slack', 1, '2026-01-01 00:00:00')"), {"url": slack})
        conn.execute(sa.text("INSERT INTO deploy_rules (repository, tag_match, tag_pattern, environment, enabled, "
                             "created_at) VALUES ('a/b', 'exact', 'main', 'prod', 1, '2026-01-01 00:00:00')"))
        conn.execute(sa.text("INSERT INTO deploy_targets (rule_id, kind, url) VALUES (1, 'webhook', :url)"),
                     {"url": deploy})
        conn.execute(sa.text("INSERT INTO deploy_targets (rule_id, kind, container) VALUES (1, 'docker', 'web')"))
        conn.execute(sa.text(
            "INSERT INTO outbound_deliveries (uuid, event, url, body, state, attempts, max_attempts, "
            "next_attempt_at, created_at) VALUES ('u1', 'build.failed', :url, '{}', 'failed', 1, 1, "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"), {"url": slack})
    engine.dispose()

    with pytest.raises(RuntimeError, match="needs the secret key"):
        command.upgrade(alembic_config(url), "head")  # rows to seal and no key: nothing changes
    box = SecretBox("migration-key")
    command.upgrade(alembic_config(url, "migration-key"), "head")
    with engine.begin() as conn:
        rows = {table: conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id")).mappings().all()
                for table in ("subscriptions", "deploy_targets", "outbound_deliveries")}
    for table, found in rows.items():
        for row in found:
            assert "url" not in row and "SlackPathSecret123" not in str(dict(row)) and "pa55word" not in str(dict(row))
    assert [box.open(r["url_enc"]) for r in rows["subscriptions"]] == [slack]
    assert [r["url_redacted"] for r in rows["subscriptions"]] == ["https://hooks.slack.com/services/****"]
    assert [(r["url_redacted"], r["url_enc"] and box.open(r["url_enc"])) for r in rows["deploy_targets"]] == [
        ("https://****:****@deploy.example.com/hook?token=****", deploy), (None, None)]
    assert [box.open(r["url_enc"]) for r in rows["outbound_deliveries"]] == [slack]

    command.downgrade(alembic_config(url, "migration-key"), "0008")
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT url FROM deploy_targets ORDER BY id")).scalars().all() == [deploy, None]
        assert conn.execute(sa.text("SELECT url FROM subscriptions")).scalars().all() == [slack]
    engine.dispose()


def test_0022_keeps_every_row_and_a_deleted_newest_triggers_id_is_never_given_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0021")
    engine = make_engine(url)
    insert_trigger = sa.text(
        "INSERT INTO triggers (provider, repository, clone_url, secret_enc, image, default_branch, enabled, "
        "created_at) VALUES ('github', :name, 'file:///x', 'tok', 'a/b', 'main', 1, '2026-01-01 00:00:00')")
    with engine.begin() as conn:
        for name in ("a/one", "a/two", "a/three"):
            conn.execute(insert_trigger, {"name": name})
        conn.execute(sa.text(
            "INSERT INTO builds (trigger_id, provider, repository, clone_url, ref, ref_type, ref_name, \"commit\", "
            "image, tags, dockerfile, context, state, attempts, created_at, origin, push) VALUES (3, 'github', "
            "'a/three', 'file:///x', 'refs/heads/main', 'branch', 'main', 'c', 'a/b', '[]', 'Dockerfile', '.', "
            "'succeeded', 1, '2026-01-01 00:00:00', 'push', 1)"))
    engine.dispose()

    command.upgrade(config, "head")

    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT trigger_id FROM builds")).scalar() == 3, "rows referring to it kept"
        conn.execute(sa.text("DELETE FROM builds"))
        conn.execute(sa.text("DELETE FROM triggers WHERE id = 3"))
        conn.execute(insert_trigger, {"name": "a/four"})
        assert conn.execute(sa.text("SELECT id FROM triggers WHERE repository = 'a/four'")).scalar() == 4
    command.downgrade(config, "0021")
    engine.dispose()


def test_0023_bumps_the_intake_config_version_on_changes_and_downgrade_drops_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0023")
    engine = make_engine(url)

    def version() -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version FROM intake_config_version")).scalar_one()

    assert version() == 0
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO triggers (provider, repository, clone_url, secret_enc, image, default_branch, enabled, "
            "supersede, public_badge, created_at) VALUES ('github', 'a/b', 'file:///x', 'tok', 'a/b', 'main', 1, 1, "
            "0, '2026-01-01 00:00:00')"))
        conn.execute(sa.text("UPDATE triggers SET enabled = 0"))
    assert version() == 2  # one per changed row on SQLite: each change counts
    command.downgrade(config, "0022")
    inspector = sa.inspect(engine)
    assert "intake_config_version" not in inspector.get_table_names()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).fetchall() == []
        conn.execute(sa.text("UPDATE triggers SET enabled = 1"))  # nothing left to bump: no error
    engine.dispose()


def test_0024_builds_by_date_trigger_and_pull_request_still_use_an_index_and_downgrade_restores_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0024")
    engine = make_engine(url)

    def plan(sql: str) -> str:
        with engine.connect() as conn:
            return " ".join(row[-1] for row in conn.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}")))

    def indexes() -> dict[str, str]:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                             "AND tbl_name = 'builds' AND sql IS NOT NULL")).fetchall())

    assert "ix_builds_created_at" not in indexes() and "ix_builds_trigger_created" not in indexes()
    assert indexes()["ix_builds_pull_request_id"].endswith("WHERE pull_request IS NOT NULL")
    assert "ix_builds_overview" in plan("SELECT count(*) FROM builds WHERE created_at >= '2026-01-01'")
    assert "ix_builds_pull_request_id" in plan("SELECT id FROM builds WHERE pull_request = 7 ORDER BY id DESC")
    assert "ix_builds_trigger_id_id" in plan("SELECT id FROM builds WHERE trigger_id = 3 AND created_at >= '2026-01-01'")
    command.downgrade(config, "0023")
    assert "ix_builds_created_at" in indexes() and "ix_builds_trigger_created" in indexes()
    assert "WHERE" not in indexes()["ix_builds_pull_request_id"]
    engine.dispose()
