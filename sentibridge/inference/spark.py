"""Batch prediction on Apache Spark: ``sentibridge predict --engine spark``.

The registered model is applied with MLflow's own ``mlflow.pyfunc.spark_udf``, so a Spark or
Databricks user gets exactly what they would write by hand. Each task slot loads the model once
(the rows are cut into one contiguous range per slot) and scores its range batch by batch; the
served model checks every row itself (``serving.SentimentModel.predict``), so a bad row gets an
``error`` and the job goes on, as in local ``predict``.

The output is a folder of Parquet part files with local ``predict``'s columns, in input order.
Input is read by Spark itself (so ``s3a://`` and ``hdfs://`` paths work on a cluster): Parquet,
CSV, TSV, JSONL, or a folder of one of them. Spark decodes CSV and JSON text leniently (bytes
that are not UTF-8 become U+FFFD instead of an ``error``); a broken JSON line gets an ``error``.
A record without an ``id`` is named by its row number.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sentibridge.errors import DataError
from sentibridge.inference.predict import OUTPUT_COLUMNS, PredictSummary
from sentibridge.labels import SCORE_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: What ``spark_udf`` returns per row: the served model's columns (``serving.OUTPUT_COLUMNS``).
#: MLflow casts each struct field with numpy (``_convert_struct_values``), which cannot put None
#: in an integer and writes it as "None" in a string, so ``label_id`` travels as a double and the
#: fields of an unlabelled row are masked on the Spark side (``predict_spark``).
RESULT_TYPE = ", ".join(
    ["label string", "label_id double", *(f"{name} double" for name in SCORE_COLUMNS), "truncated boolean", "error string"]
)
#: Spark's reader per input suffix.
FORMATS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".ndjson": "json"}
DEFAULT_MASTER = "local[*]"
#: Spark's column for a JSON line it could not parse.
_CORRUPT = "_corrupt_record"
#: Spark's own log lines: errors only.
_LOG4J = """rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark: %p %c{1}: %m%n
"""
#: ``monotonically_increasing_id`` puts the partition id above bit 33.
_PARTITION_SHIFT = 33


@dataclass(frozen=True)
class SparkSettings:
    """How the Spark job runs. ``partitions``: row ranges scored in parallel (default: one per
    task slot, Spark's ``defaultParallelism``), each loading the model once."""

    master: str = DEFAULT_MASTER
    partitions: int | None = None


def spark_session(master: str = DEFAULT_MASTER, app_name: str = "sentibridge-predict") -> SparkSession:
    """A session for scoring: Arrow batches to the Python workers, one torch thread per task slot
    (Spark already runs one worker per core; more threads per worker would fight over the cores)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise DataError("--engine spark needs pyspark: pip install 'sentibridge[spark]' (and Java 17)") from exc
    # Spark's INFO and WARN lines are not what a `predict` user asked for; errors still show.
    log_config = Path(tempfile.gettempdir()) / "sentibridge-spark-log4j2.properties"
    log_config.write_text(_LOG4J, encoding="utf-8")
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={log_config.as_uri()}")
        .config("spark.executorEnv.OMP_NUM_THREADS", "1")
        .config("spark.executorEnv.PYTHONWARNINGS", "ignore:PySpark does not yet fully support pandas:FutureWarning")
    )
    if master.startswith("local"):  # workers on this machine run this interpreter (a cluster's have their own)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # pyspark 4 warns on every pandas UDF that pandas 3 is "not yet fully" supported; the output is checked in tests.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    return builder.getOrCreate()


def read_input(spark: SparkSession, path: str) -> DataFrame:
    """The input as Spark reads it, by suffix (a local folder: by its files' one suffix)."""
    suffix = _input_suffix(path)
    reader = spark.read
    if suffix in (".csv", ".tsv"):
        # Quoted fields may span lines and be of any length, as in local predict.
        reader = reader.options(header=True, multiLine=True, escape='"', sep="\t" if suffix == ".tsv" else ",",
                                mode="PERMISSIVE")
    elif FORMATS[suffix] == "json":
        reader = reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", _CORRUPT)
    frame = reader.format(FORMATS[suffix]).load(path)
    if "text" not in frame.columns:
        raise DataError(f"{path}: no 'text' column (columns: {', '.join(c for c in frame.columns if c != _CORRUPT)})")
    return frame


def predict_spark(spark: SparkSession, model_uri: str, input_path: str, output_path: str,
                  partitions: int | None = None, errors_shown: int = 5) -> PredictSummary:
    """Label ``input_path`` into the Parquet folder ``output_path`` with ``model_uri`` (``models:/name/version``).

    Rows are numbered in input order first (per-partition counts, then offsets: no shuffle of
    the input), then cut into ``partitions`` contiguous ranges, so each task loads the model once
    and the part files come out in input order.
    """
    import mlflow.pyfunc
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    check_paths(input_path, output_path)
    source = read_input(spark, input_path)
    numbered = _numbered(source)
    text, language = F.col("text"), F.col("language") if "language" in source.columns else F.lit(None).cast("string")
    read_error = F.lit(None).cast("string")
    if _CORRUPT in source.columns:
        read_error = F.when(F.col(_CORRUPT).isNotNull(), F.lit("broken JSON line"))
    if not isinstance(source.schema["text"].dataType, StringType):
        read_error = F.coalesce(read_error, F.when(text.isNotNull(), F.lit("text is not a string")))
    rows = numbered.select(
        "row",
        F.col("id").cast("string").alias("id") if "id" in source.columns else F.lit(None).cast("string").alias("id"),
        text.cast("string").alias("text"),
        language.cast("string").alias("language"),
        read_error.alias("read_error"),
    )
    rows = rows.repartitionByRange(partitions or spark.sparkContext.defaultParallelism, "row")
    model = mlflow.pyfunc.spark_udf(spark, model_uri, result_type=RESULT_TYPE, env_manager="local")
    # A row Spark could not read is sent as an empty text: the model skips it unscored.
    sent = F.struct(F.when(F.col("read_error").isNull(), F.col("text")).otherwise(F.lit("")).alias("text"),
                    F.col("language").alias("language"))
    scored = rows.withColumn("p", model(sent))
    error = F.coalesce(F.col("read_error"), F.when(F.col("p.error") != "None", F.col("p.error")))
    ok = error.isNull()
    code = F.lower(F.trim(F.col("language")))
    out = scored.select(
        "row",
        F.coalesce(F.when(F.col("id") != "", F.col("id")), F.col("row").cast("string")).alias("id"),
        F.when(ok, F.col("text")).alias("text"),
        F.when(ok & (code != ""), code).alias("language"),
        F.when(ok, F.col("p.label")).alias("label"),
        F.when(ok, F.col("p.label_id").cast("long")).alias("label_id"),
        *(F.when(ok, F.col(f"p.{name}")).alias(name) for name in (*SCORE_COLUMNS, "truncated")),
        error.alias("error"),
    ).sortWithinPartitions("row")
    out.select(*OUTPUT_COLUMNS).write.mode("errorifexists").parquet(output_path)
    return _summary(spark, output_path, errors_shown)


def predict_on(master: str | None, model_uri: str, input_path: str, output_path: str,
               partitions: int | None = None) -> PredictSummary:
    """``predict_spark`` in a session of its own on ``master`` (default ``DEFAULT_MASTER``), stopped after;
    the paths are checked before Spark starts."""
    check_paths(input_path, output_path)
    session = spark_session(master or DEFAULT_MASTER)
    try:
        return predict_spark(session, model_uri, input_path, output_path, partitions)
    finally:
        session.stop()


def check_paths(input_path: str, output_path: str) -> None:
    """The mistakes found before Spark starts: an input Spark cannot read, an output that exists.

    A local input is also read as local ``predict`` reads it (``files.iter_prediction_input``
    checks every file's format and its ``text`` column, without reading the rows).
    """
    _input_suffix(input_path)
    if "://" not in input_path:
        from sentibridge.inference.files import iter_prediction_input

        iter_prediction_input(Path(input_path))
    if "://" not in output_path and Path(output_path).exists():
        raise DataError(f"{output_path}: already exists (--engine spark writes a new folder of Parquet files)")


def _numbered(frame: DataFrame) -> DataFrame:
    """``frame`` with ``row``: 0, 1, ... in input order, from each partition's count and offset."""
    from pyspark.sql import functions as F

    local = frame.withColumn("_partition", F.spark_partition_id()).withColumn("_id", F.monotonically_increasing_id())
    counts = dict(local.groupBy("_partition").count().collect())
    offsets, total = {}, 0
    for partition in sorted(counts):
        offsets[partition], total = total, total + counts[partition]
    offset = F.create_map(*(F.lit(v) for pair in offsets.items() for v in pair)) if offsets else F.create_map()
    index = F.col("_id") - F.shiftleft(F.col("_partition").cast("long"), _PARTITION_SHIFT)
    return local.withColumn("row", (F.coalesce(offset[F.col("_partition")], F.lit(0)) + index).cast("long"))


def _summary(spark: SparkSession, output_path: str, errors_shown: int) -> PredictSummary:
    """Counts read back from the written output (no second pass over the model)."""
    from pyspark.sql import functions as F

    written = spark.read.parquet(output_path)
    counts = written.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count("label").alias("predicted"),
        F.sum(F.col("truncated").cast("long")).alias("truncated"),
    ).first()
    first = written.where(F.col("error").isNotNull()).orderBy("row").select("row", "error").limit(errors_shown).collect()
    rows, predicted = int(counts["rows"]), int(counts["predicted"])
    return PredictSummary(rows=rows, predicted=predicted, errors=rows - predicted,
                          first_errors=tuple((int(r["row"]), str(r["error"])) for r in first),
                          truncated=int(counts["truncated"] or 0))


def _input_suffix(path: str) -> str:
    """The input's format: its suffix, or for a local folder the one suffix of its files."""
    local = Path(path) if "://" not in path else None
    if local is not None and local.is_dir():
        suffixes = {p.suffix.lower() for p in local.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))}
        known = suffixes & set(FORMATS)
        if len(known) != 1:
            raise DataError(f"{path}: --engine spark reads a folder of one format ({', '.join(FORMATS)}); "
                            f"found {', '.join(sorted(suffixes)) or 'no files'}")
        return known.pop()
    if local is not None and not local.exists():
        raise DataError(f"{path}: no such file or folder")
    suffix = Path(path.rstrip("/")).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: --engine spark reads {', '.join(FORMATS)} (a .txt file: use local predict)")
    return suffix
