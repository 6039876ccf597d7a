"""Dataset cards: TOML files in the datasets folder that declare where a dataset comes from and
how it is processed.

A card names up to two sources. The "released" source is processed data that another project
published (shipped under datasets/embedded/ or placed by the user). The "raw" source is the
Amazon review and metadata files that `clairo-bench datasets download` fetches and the raw loader
processes with the card's [processing] settings. `default_source` picks the one that
`load_dataset` uses unless asked otherwise. datasets/README.md documents every key.

The datasets folder is, in order of precedence: the `datasets_dir` argument, the
CLAIRO_BENCH_DATASETS_DIR environment variable, or the `datasets/` folder at the repository root
(the project is installed editable, so the package sits inside the repository).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clairo_bench.data.dataset import MODALITIES, DataError

DATASETS_DIR_ENV = "CLAIRO_BENCH_DATASETS_DIR"
RAW_DIR_ENV = "CLAIRO_BENCH_RAW_DIR"

SOURCES = ("released", "raw")
REPEAT_POLICIES = ("keep_first", "keep_last", "keep_all")
MISSING_METADATA_POLICIES = ("drop", "keep", "error")
RELEASED_FORMATS = ("mql4grec", "user_sequence", "recbole")
RAW_FORMATS = ("amazon2018", "amazon2014")
# Releases of the Amazon review data that the loaders read (McAuley lab, UCSD).
RELEASE_YEARS = (2014, 2018)

_REPOSITORY_DATASETS_DIR = Path(__file__).resolve().parents[2] / "datasets"


@dataclass(frozen=True)
class ProcessingSettings:
    """Filtering and ordering settings, recorded in every Dataset built from a card.

    For a released source these settings describe what the releasing project did. For the raw
    source the raw loader applies them.

    Attributes:
        k_core: minimum number of interactions of every user and every item, applied repeatedly
            until no user or item falls below it (0 disables the filter).
        repeat_policy: what to do with a user's repeated interactions with one item:
            "keep_first" (MQL4GRec), "keep_last" or "keep_all".
        missing_metadata: what to do with reviewed items that have no metadata line: "drop"
            them before the k-core filter, "keep" them without metadata, or raise ("error").
        require_image: keep only items whose metadata has an image URL (MQL4GRec keeps only
            items with a downloadable image).
        max_history_items: history cap for the split (SplitSettings.max_history_items).
    """

    k_core: int = 5
    repeat_policy: str = "keep_first"
    missing_metadata: str = "drop"
    require_image: bool = False
    max_history_items: int = 20

    def validate(self, card_path: Path) -> None:
        """Raise DataError naming the card when a setting is out of range."""
        if self.k_core < 0:
            raise DataError(f"{card_path}: [processing] k_core must be >= 0, got {self.k_core}.")
        if self.repeat_policy not in REPEAT_POLICIES:
            raise DataError(
                f"{card_path}: [processing] repeat_policy {self.repeat_policy!r} is unknown; "
                f"use one of {', '.join(REPEAT_POLICIES)}."
            )
        if self.missing_metadata not in MISSING_METADATA_POLICIES:
            raise DataError(
                f"{card_path}: [processing] missing_metadata {self.missing_metadata!r} is "
                f"unknown; use one of {', '.join(MISSING_METADATA_POLICIES)}."
            )
        if self.max_history_items < 1:
            raise DataError(
                f"{card_path}: [processing] max_history_items must be >= 1, "
                f"got {self.max_history_items}."
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RawFile:
    """One file of a raw source: where it is published and where it is stored locally."""

    role: str
    url: str
    file_name: str
    sha256: str | None


@dataclass(frozen=True)
class RawSource:
    """Amazon review and metadata files, published under `base_url`.

    Attributes:
        format: "amazon2018" or "amazon2014" (metadata field names differ; both are read).
        base_url: URL prefix of the files, ending in "/".
        reviews: path of the review file below base_url (JSON lines, or a ratings-only CSV).
        metadata: path of the metadata file below base_url, or None.
        sha256: expected SHA-256 of the stored (compressed) file, by file name; files without an
            entry are not verified.
    """

    format: str
    base_url: str
    reviews: str
    metadata: str | None
    sha256: dict[str, str] = field(default_factory=dict)

    def files(self) -> list[RawFile]:
        """List the files to fetch, reviews first."""
        entries = [("reviews", self.reviews)]
        if self.metadata:
            entries.append(("metadata", self.metadata))
        files = []
        for role, relative in entries:
            file_name = relative.rsplit("/", 1)[-1]
            files.append(
                RawFile(
                    role=role,
                    url=self.base_url + relative,
                    file_name=file_name,
                    sha256=self.sha256.get(file_name) or None,
                )
            )
        return files


@dataclass(frozen=True)
class CodeFileSpec:
    """A released file of semantic codes for one modality."""

    modality: str
    file: str
    codebook_size: int | None


@dataclass(frozen=True)
class ReleasedSource:
    """Processed data that another project published.

    Attributes:
        format: "mql4grec" (X.inter.json + X.item2id + code files), "user_sequence" (P5/S3Rec
            user_sequence.txt) or "recbole" (a RecBole atomic .inter file).
        directory: folder of the files (absolute; relative paths in the card are resolved
            against the card's folder).
        files: file name by role ("inter", "item2id", "user_sequence").
        codes: code files, one per modality.
        reference_split: released split files by stage ("train", "valid", "test"), relative to
            `directory`; used to check that the shared split reproduces them.
        sha256: expected SHA-256 of each file's decompressed content, by the file name in the
            card, so the hash equals that of the uncompressed upstream file.
        provenance: repository, commit and folder the files were copied from.
    """

    format: str
    directory: Path
    files: dict[str, str]
    codes: tuple[CodeFileSpec, ...] = ()
    reference_split: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    provenance: str = ""

    def path(self, file_name: str) -> Path:
        return self.directory / file_name

    def all_files(self) -> list[str]:
        """List the file names the importer reads (split reference files excluded)."""
        return list(self.files.values()) + [spec.file for spec in self.codes]


@dataclass(frozen=True)
class DatasetCard:
    """A parsed dataset card.

    Attributes:
        name: dataset name; equals the card's file stem.
        title: one-line human-readable description.
        category: Amazon category name as the review site spells it (e.g. "Musical_Instruments").
        year: release year of the Amazon review data (2014 or 2018).
        default_source: "released" or "raw".
        processing: filtering and ordering settings.
        raw: the raw source, or None.
        released: the released source, or None.
        path: the card file.
    """

    name: str
    title: str
    category: str
    year: int
    default_source: str
    processing: ProcessingSettings
    raw: RawSource | None
    released: ReleasedSource | None
    path: Path

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(source for source in SOURCES if getattr(self, source) is not None)

    def resolve_source(self, source: str | None) -> str:
        """Return `source`, or the default source when None; raise DataError if undeclared."""
        chosen = source or self.default_source
        if chosen not in SOURCES:
            raise DataError(
                f"Unknown source {chosen!r} for dataset {self.name!r}; use one of "
                f"{', '.join(SOURCES)}."
            )
        if getattr(self, chosen) is None:
            raise DataError(
                f"Dataset {self.name!r} has no {chosen} source (card {self.path}); "
                f"available: {', '.join(self.sources) or 'none'}."
            )
        return chosen

    def raw_dir(self, raw_root: Path | None = None) -> Path:
        """Return the folder that contains (or will contain) this dataset's raw files.

        The root is `raw_root`, else CLAIRO_BENCH_RAW_DIR, else raw/ in the datasets folder.
        """
        if raw_root is None:
            from_environment = os.environ.get(RAW_DIR_ENV)
            raw_root = Path(from_environment) if from_environment else self.path.parent / "raw"
        return Path(raw_root) / self.name


def datasets_dir(override: Path | str | None = None) -> Path:
    """Return the datasets folder: the argument, CLAIRO_BENCH_DATASETS_DIR, or the repository's."""
    if override is not None:
        return Path(override)
    from_environment = os.environ.get(DATASETS_DIR_ENV)
    if from_environment:
        return Path(from_environment)
    return _REPOSITORY_DATASETS_DIR


def card_names(directory: Path | str | None = None) -> list[str]:
    """Return the names of all cards in the datasets folder, sorted."""
    folder = datasets_dir(directory)
    if not folder.is_dir():
        raise DataError(
            f"Datasets folder {folder} not found; set {DATASETS_DIR_ENV} or pass the folder "
            "that contains the *.toml dataset cards."
        )
    # Only files count: a folder or a dangling link named *.toml is no card.
    return sorted(path.stem for path in folder.glob("*.toml") if path.is_file())


def load_card(name: str, directory: Path | str | None = None) -> DatasetCard:
    """Read and validate the card `<datasets folder>/<name>.toml`."""
    folder = datasets_dir(directory)
    path = folder / f"{name}.toml"
    # The name also becomes a folder of the runs directory, so it must be a plain file stem.
    if not name or Path(name).name != name or name.startswith(".") or "\0" in name:
        raise DataError(
            f"Invalid dataset name {name!r}: use a card name such as 'instruments', "
            "without path separators."
        )
    if not path.is_file():
        known = card_names(folder) if folder.is_dir() else []
        raise DataError(
            f"No dataset card {path}; known datasets: {', '.join(known) or 'none'}. "
            "Check the name or add a card."
        )
    return parse_card(path)


def parse_card(path: Path) -> DatasetCard:
    """Parse one card file; raise DataError naming the card and key for invalid content."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise DataError(f"Dataset card {path} is not valid TOML: {error}.") from error
    except UnicodeDecodeError as error:
        raise DataError(
            f"Dataset card {path} is not valid UTF-8 at byte {error.start}; save it as UTF-8 "
            "text."
        ) from error
    except OSError as error:
        raise DataError(
            f"Dataset card {path} cannot be read: {error.strerror or error}; check the file and "
            "its permissions."
        ) from error
    reader = _TableReader(path, "", document)

    name = reader.string("name")
    if name != path.stem:
        raise DataError(
            f"Dataset card {path} declares name {name!r}; the name must equal the file stem "
            f"{path.stem!r}. Rename the file or fix the name."
        )
    year = reader.integer("year")
    if year not in RELEASE_YEARS:
        reader.fail(
            "year", year,
            f"use {' or '.join(map(str, RELEASE_YEARS))}, the release of the Amazon review data",
        )
    processing = _parse_processing(reader.table("processing", required=False), path)
    raw_table = reader.table("raw", required=False)
    released_table = reader.table("released", required=False)
    if raw_table is None and released_table is None:
        raise DataError(
            f"Dataset card {path} declares no source; add a [released] table (processed files "
            "another project published) or a [raw] table (Amazon review files to download), "
            "as datasets/README.md describes."
        )

    card = DatasetCard(
        name=name,
        title=reader.string("title"),
        category=reader.string("category"),
        year=year,
        default_source=reader.string("default_source"),
        processing=processing,
        raw=_parse_raw(raw_table) if raw_table is not None else None,
        released=_parse_released(released_table, path) if released_table is not None else None,
        path=path,
    )
    reader.reject_unknown()
    card.resolve_source(card.default_source)
    return card


def _parse_processing(reader: _TableReader | None, path: Path) -> ProcessingSettings:
    if reader is None:
        settings = ProcessingSettings()
    else:
        defaults = ProcessingSettings()
        settings = ProcessingSettings(
            k_core=reader.integer("k_core", default=defaults.k_core),
            repeat_policy=reader.string("repeat_policy", default=defaults.repeat_policy),
            missing_metadata=reader.string("missing_metadata", default=defaults.missing_metadata),
            require_image=reader.boolean("require_image", default=defaults.require_image),
            max_history_items=reader.integer(
                "max_history_items", default=defaults.max_history_items
            ),
        )
        reader.reject_unknown()
    settings.validate(path)
    return settings


def _parse_raw(reader: _TableReader) -> RawSource:
    raw_format = reader.string("format")
    if raw_format not in RAW_FORMATS:
        reader.fail("format", raw_format, f"use one of {', '.join(RAW_FORMATS)}")
    base_url = reader.string("base_url")
    if urlsplit(base_url).scheme not in ("http", "https") or not base_url.endswith("/"):
        reader.fail("base_url", base_url, "give an http(s) URL that ends in '/'")
    source = RawSource(
        format=raw_format,
        base_url=base_url,
        reviews=reader.string("reviews"),
        metadata=reader.string("metadata", default=None),
        sha256=reader.string_table("sha256"),
    )
    reader.reject_unknown()
    return source


def _parse_released(reader: _TableReader, card_path: Path) -> ReleasedSource:
    released_format = reader.string("format")
    if released_format not in RELEASED_FORMATS:
        reader.fail("format", released_format, f"use one of {', '.join(RELEASED_FORMATS)}")
    required_roles = {
        "mql4grec": ("inter", "item2id"),
        "user_sequence": ("user_sequence",),
        "recbole": ("inter",),
    }[released_format]
    files = {role: reader.string(role) for role in required_roles}

    codes = []
    codes_reader = reader.table("codes", required=False)
    if codes_reader is not None:
        for modality in list(codes_reader.keys()):
            if modality not in MODALITIES:
                codes_reader.fail(modality, modality, f"use one of {', '.join(MODALITIES)}")
            spec_reader = codes_reader.table(modality)
            codes.append(
                CodeFileSpec(
                    modality=modality,
                    file=spec_reader.string("file"),
                    codebook_size=spec_reader.integer("codebook_size", default=None),
                )
            )
            spec_reader.reject_unknown()
        codes_reader.reject_unknown()

    directory = Path(reader.string("path"))
    if not directory.is_absolute():
        directory = card_path.parent / directory
    source = ReleasedSource(
        format=released_format,
        directory=directory,
        files=files,
        codes=tuple(codes),
        reference_split=reader.string_table("reference_split"),
        sha256=reader.string_table("sha256"),
        provenance=reader.string("provenance", default=""),
    )
    reader.reject_unknown()
    return source


_MISSING = object()


class _TableReader:
    """Typed access to one TOML table that remembers which keys were read."""

    def __init__(self, path: Path, prefix: str, table: dict[str, Any]) -> None:
        self.path = path
        self.prefix = prefix
        self.data = table
        self.read: set[str] = set()

    def keys(self) -> list[str]:
        return list(self.data)

    def fail(self, key: str, value: Any, fix: str) -> None:
        raise DataError(f"Dataset card {self.path}: invalid {self.prefix}{key} = {value!r}; {fix}.")

    def _get(self, key: str, expected: type | tuple[type, ...], kind: str, default: Any) -> Any:
        self.read.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise DataError(
                    f"Dataset card {self.path}: required key {self.prefix}{key} is missing; "
                    f"add it ({kind})."
                )
            return default
        value = self.data[key]
        # bool is a subclass of int, so integers must reject it explicitly.
        if not isinstance(value, expected) or (kind == "an integer" and isinstance(value, bool)):
            self.fail(key, value, f"it must be {kind}")
        return value

    def string(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, str, "a string", default)

    def integer(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, int, "an integer", default)

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, bool, "true or false", default)

    def table(self, key: str, required: bool = True) -> _TableReader | None:
        value = self._get(key, dict, "a table", _MISSING if required else None)
        if value is None:
            return None
        return _TableReader(self.path, f"{self.prefix}{key}.", value)

    def string_table(self, key: str) -> dict[str, str]:
        """Read an optional table of strings (file name -> hash, stage -> file)."""
        reader = self.table(key, required=False)
        if reader is None:
            return {}
        values = {name: reader.string(name) for name in reader.keys()}
        return {name: value for name, value in values.items() if value}

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            raise DataError(
                f"Dataset card {self.path}: unknown key(s) "
                f"{', '.join(self.prefix + key for key in unknown)}; check the spelling against "
                "datasets/README.md."
            )
