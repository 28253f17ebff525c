"""Worker identities stay out of the lake: the falhas USUARIO is pseudonymized when landed with a key kept
outside it, the original file naming people is not kept, and a lake an older Käfer filled is rewritten once."""

from __future__ import annotations

import os
import stat

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kafer import catalog, people
from kafer.catalog import raw_records
from kafer.cli import main
from kafer.config import load_settings
from kafer.demo import make_demo_upload
from kafer.demo.plant import USERS
from kafer.errors import ConfigError, LakeError
from kafer.ingest import ingest, rebuild
from kafer.lake import Lake
from kafer.readers import read_export


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_upload(tmp_path_factory.mktemp("people") / "demo", cars=150, seed=5, results_per_car=20)


@pytest.fixture
def settings(tmp_path):
    return load_settings(lake=str(tmp_path / "lake"), person_key_file=str(tmp_path / "keys" / "person.key"))


def badges_in(lake: Lake) -> set[str]:
    """The badges of the demo's inspectors found anywhere in the lake's bytes."""
    found = set()
    for key in lake.list(""):
        data = lake.read_bytes(key)
        if key.endswith(".parquet"):
            table = lake.read_table(key)
            data = b" ".join(str(v).encode() for c in table.column_names for v in pc.unique(table[c]).to_pylist())
        found |= {badge for badge in USERS if badge.encode() in data}
    return found


def test_a_pseudonym_is_a_keyed_hash_of_the_badge_the_same_for_the_same_badge():
    values = pa.array(["2021234", "", None, "2021234", "FHQWRAP"])
    one, other = people.pseudonyms(values, b"k" * 32).to_pylist(), people.pseudonyms(values, b"q" * 32).to_pylist()
    assert one[0] == one[3] != one[4] and one[1:3] == ["", None]
    assert one[0].startswith("P") and len(one[0]) == 17 and int(one[0][1:], 16) >= 0
    assert one[0] != other[0], "another key, another pseudonym: the badge cannot be guessed without the key"


def test_no_badge_reaches_the_lake_and_the_falhas_file_is_not_kept(settings, demo):
    lake = Lake(settings.lake)
    ingest([str(demo.folder)], lake=lake, settings=settings)
    assert badges_in(lake) == set()
    falhas = [r for r in raw_records(lake) if r["kind"] == "falhas"]
    assert falhas and all(r["keys"]["file"] is None and r["people"] == people.METHOD for r in falhas)
    assert not [k for k in lake.list("raw/files") if "FALHAS" in k or k.endswith(".csv")]
    rows = catalog.raw_rows(lake, falhas)
    assert pc.all(pc.starts_with(pc.drop_null(rows["USUARIO"]), "P")).as_py()
    assert len(lake.list("raw/files")) == len(raw_records(lake)) - len(falhas), "the other files are kept whole"


def test_the_key_is_made_once_outside_the_lake_readable_by_its_owner_alone(settings, demo):
    lake = Lake(settings.lake)
    ingest([str(demo.folder)], lake=lake, settings=settings)
    path = settings.person_key_file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = people.person_key(settings, lake)
    assert catalog.person_key_fingerprint(lake)["fingerprint"] == people.fingerprint(key)
    assert open(path).read().strip() == key.hex() and key.hex() not in str(badges_in(lake))
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="can be read by others than its owner: chmod 600"):
        people.person_key(settings, lake)


def test_another_key_or_none_is_refused_on_a_lake_that_has_one(settings, demo, tmp_path):
    lake = Lake(settings.lake)
    ingest([str(demo.folder)], lake=lake, settings=settings)
    elsewhere = settings.replace(person_key_file=str(tmp_path / "other" / "person.key"))
    with pytest.raises(ConfigError, match="a key made elsewhere .* copy the key file from the machine that made it"):
        people.person_key(elsewhere, lake)
    assert not os.path.exists(elsewhere.person_key_file), "no second key is made for a lake that has one"
    os.makedirs(tmp_path / "other")
    with open(elsewhere.person_key_file, "w") as out:
        out.write("ab" * 32)
    os.chmod(elsewhere.person_key_file, 0o600)
    with pytest.raises(ConfigError, match="is not the one the lake .* pseudonymized people's ids with"):
        people.person_key(elsewhere, lake)


def test_a_key_inside_the_lake_is_refused(tmp_path):
    settings = load_settings(lake=str(tmp_path / "lake"), person_key_file=str(tmp_path / "lake" / "key"))
    with pytest.raises(ConfigError, match="lies inside the lake"):
        people.person_key(settings, Lake(settings.lake))


def land_in_clear(lake: Lake, folder) -> None:
    """What an older Käfer landed: every file's bytes and its rows, the falhas badges in clear."""
    from kafer.staging import _sorted

    for path in sorted(folder.iterdir()):
        export = read_export(path.read_bytes(), path.name)
        keys = catalog.raw_keys(sha256=export.sha256, kind=export.kind, fmt=export.format)
        rows = _sorted(export.table)
        lake.write_table(keys["rows"], rows)
        lake.write_bytes(keys["file"], path.read_bytes())
        lake.write_json(keys["index"], {"sha256": export.sha256, "name": export.name, "kind": export.kind,
                                        "format": export.format, "size": export.size, "sheets": list(export.sheets),
                                        "rows": export.rows, "cars": export.cars, "keys": keys,
                                        "period": [export.period[0].isoformat(), export.period[1].isoformat()],
                                        "landed_at": "2024-06-01T00:00:00+00:00"})


def test_a_lake_holding_badges_in_clear_is_refused_then_rewritten_once(settings, demo, tmp_path, capsys,
                                                                      monkeypatch):
    lake = Lake(settings.lake)
    land_in_clear(lake, demo.folder)
    assert badges_in(lake)
    with pytest.raises(LakeError, match="holds people's ids in clear .* run `kafer pseudonymize` once"):
        ingest([str(demo.folder)], lake=lake, settings=settings)
    (tmp_path / "kafer.toml").write_text(f'person_key_file = "{settings.person_key_file}"\n')
    monkeypatch.chdir(tmp_path)  # the project whose kafer.toml names the key
    where = ["--lake", settings.lake]
    assert main(["pseudonymize", *where]) == 0
    assert capsys.readouterr().out.startswith("Pseudonymized the people's ids of 2 landed files")
    assert main(["pseudonymize", *where]) == 0
    assert "holds no person's id in clear: nothing to do" in capsys.readouterr().out
    assert badges_in(lake) == set() and not people.clear_records(lake)
    fresh = Lake(str(tmp_path / "fresh"))
    ingest([str(demo.folder)], lake=fresh, settings=settings.replace(lake=fresh.url))
    for old, new in zip(sorted(raw_records(lake), key=lambda r: r["name"]),
                        sorted(raw_records(fresh), key=lambda r: r["name"])):
        assert lake.read_table(old["keys"]["rows"]).equals(fresh.read_table(new["keys"]["rows"])), old["name"]
    manifest = rebuild(lake=lake, settings=settings)
    assert manifest["cars"] == 150 and catalog.current_features(lake).equals(catalog.current_features(fresh))
