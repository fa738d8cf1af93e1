"""The one sentibridge pipeline: data preparation, then (unless ``data_only``) the model half."""

from __future__ import annotations

from zenml import pipeline

from sentibridge.config import Settings
from steps.augment import augment
from steps.demonstrations import demonstrations
from steps.evaluate import evaluate
from steps.gate import gate
from steps.ingest import ingest
from steps.instructions import instructions
from steps.label_issues import label_issues
from steps.register import register
from steps.soup import soup
from steps.split import split
from steps.train import train


@pipeline(enable_cache=True)
def sentibridge_pipeline(settings: Settings, data_version: dict[str, str], data_only: bool = False) -> None:
    """Ingest -> split -> label_issues [-> augment -> demonstrations -> instructions -> train -> evaluate -> register -> gate].

    With ``train.soup_seeds`` train runs once per seed and a ``soup`` step averages the members.

    Evaluation runs before registration on the same merged 16-bit weights, so a registered
    version always carries its per-language scores and a failed evaluation registers nothing.
    Each step gets only the config sections (or values) it reads, so ZenML's cache key of a
    step changes with its own inputs only; train and register also get the whole resolved
    config as a plain dict, to log it and to save it with the model.
    """
    valid_rows, quarantine, ingest_report = ingest(
        data_path=settings.data.path, data=settings.data, version=data_version
    )
    split_train_rows, val_rows, test_rows, _leaks, holdout, split_report, _view = split(
        valid_rows=valid_rows,
        quarantine=quarantine,
        ingest_report=ingest_report,
        data=settings.data,
        split_cfg=settings.split,
    )
    train_rows, _issues, data_report, _issues_view = label_issues(
        train_rows=split_train_rows, val_rows=val_rows, test_rows=test_rows, data_report=split_report,
        data=settings.data, seed=settings.split.seed, embedder=settings.embedding.label_issues_model,
        embed_precision=settings.embedding.precision,
    )
    if data_only:
        return
    run_config = settings.model_dump(mode="json")
    embedding = settings.embedding
    augmented_rows, _index, _augment_report, _augment_view = augment(
        train_rows=train_rows, holdout_keys=holdout, augment_cfg=settings.augment, embedder=embedding.model,
        embed_batch_size=embedding.batch_size, embed_precision=embedding.precision, model_cfg=settings.model,
        eval_cfg=settings.eval,
    )
    store = demonstrations(
        train_rows=augmented_rows,
        demonstrations_cfg=settings.demonstrations,
        embedder=embedding.model,
        embed_batch_size=embedding.batch_size,
        embed_precision=embedding.precision,
    )
    train_records, val_records, _export = instructions(
        train_rows=augmented_rows, val_rows=val_rows, demonstration_store=store, model_cfg=settings.model,
        seed=settings.instructions.seed, embed_precision=embedding.precision,
    )
    evaluation = dict(
        test_rows=test_rows, val_rows=val_rows, demonstration_store=store, model_cfg=settings.model,
        eval_cfg=settings.eval, split_seed=settings.split.seed, embed_precision=embedding.precision,
    )
    training = dict(
        train_records=train_records, val_records=val_records, model_cfg=settings.model, lora_cfg=settings.lora,
        data_report=data_report, run_config=run_config,
    )
    member_metrics = []
    if settings.train.soup_seeds:
        # One train step per seed (parallel pods on Kubernetes), each member evaluated for its
        # own scores and the measured seed spread, then one soup adapter for everything after.
        seeds = settings.train.soup_seeds
        members = [
            train(**training, train_cfg=settings.train.model_copy(update={"seed": seed, "soup_seeds": None}),
                  id=f"train_seed{seed}")
            for seed in seeds
        ]
        member_metrics = [
            evaluate(lora_adapter=adapter, **evaluation, member=f"seed{seed}", id=f"evaluate_seed{seed}")[0]
            for seed, (adapter, _) in zip(seeds, members)
        ]
        lora_adapter, train_summary = soup(
            lora_adapters=[adapter for adapter, _ in members], train_summaries=[summary for _, summary in members],
            seeds=seeds,
        )
    else:
        lora_adapter, train_summary = train(**training, train_cfg=settings.train)
    metrics, predictions, _eval_view = evaluate(lora_adapter=lora_adapter, **evaluation)
    registration = register(
        lora_adapter=lora_adapter,
        demonstration_store=store,
        metrics=metrics,
        train_summary=train_summary,
        data_report=data_report,
        model_cfg=settings.model,
        lora_cfg=settings.lora,
        demonstrations_k=settings.demonstrations.k,
        registry_cfg=settings.registry,
        run_config=run_config,
    )
    gate(
        registration=registration, metrics=metrics, predictions=predictions, test_rows=test_rows,
        data_report=data_report, gate_cfg=settings.gate, model_cfg=settings.model, eval_cfg=settings.eval,
        registry_cfg=settings.registry, member_metrics=member_metrics,
    )
