"""Training entry point: SageMaker script mode, EC2 and local runs share this one code path.

    python -m training.train --data DIR|s3://... --model-dir DIR|s3://... [hyperparameters]

Under SageMaker the data comes from SM_CHANNEL_TRAINING (train/valid/test subfolders) or from
SM_CHANNEL_TRAIN/VALID/TEST, artifacts go to SM_MODEL_DIR, and hyperparameters arrive as
`--key value` (either `--batch-size` or `--batch_size`; booleans as true/false strings).
Output contract (stdout, one line each, stable `key=value` pairs):

    epoch=3 train_loss=0.5100 valid_loss=0.4100 valid_acc=0.8800 seconds=0.012
    best_epoch=3 best_valid_loss=0.4100 best_valid_acc=0.8800
    test_acc=0.9300 test_loss=0.2000
    baseline_test_acc=0.9100          (only when a baseline was evaluated)
    skipped_images=0

Rank 0 also writes evaluation.json (training.evaluation): the candidate's per-class report on the
test split and, given --baseline (or the "baseline" channel), the live model's on the same images.

Bad input prints one `error: ...` line on stderr, writes it to `<output dir>/failure` and
exits 2; any other crash writes the failure file too and exits 1 with its traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file (SageMaker entry_point="training/train.py")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Mapping  # noqa: E402

from training import storage  # noqa: E402
from training.config import ARCHS, InputError, TrainConfig, defaults  # noqa: E402
from training.dataset import SPLITS, resolve_split_dir  # noqa: E402

EXIT_BAD_INPUT = 2
SERVING_DIR = "serving"  # the training bundle's copy of model.tar.gz's code/ (infra_scripts.packaging)
MAX_SKIP_WARNINGS = 10


# --------------------------------------------------------------------------- arguments
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump: becomes `error: ...`, exit 2
        raise InputError(message)


def _text(value: str) -> str:
    """SageMaker's SDK JSON-encodes string hyperparameters; accept '"resnet18"' too."""
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def integer(value: str) -> int:
    return int(_text(value))


def number(value: str) -> float:
    return float(_text(value))


def boolean(value: str) -> bool:
    text = _text(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _names(name: str) -> list[str]:
    """Both spellings: kebab-case for people, snake_case as SageMaker estimators often pass."""
    return list(dict.fromkeys([f"--{name}", f"--{name.replace('-', '_')}"]))


def _flag(p: argparse.ArgumentParser, name: str, default: bool, help: str) -> None:
    """`--name`, `--name true|false` and `--no-name`."""
    dest = name.replace("-", "_")
    p.add_argument(*_names(name), dest=dest, nargs="?", const=True, default=default,
                   type=boolean, metavar="BOOL", help=help)
    p.add_argument(*_names(f"no-{name}"), dest=dest, action="store_false", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    d = defaults
    p = _Parser(prog="python -m training.train", description=__doc__.split("\n")[0])
    add = p.add_argument
    add(*_names("arch"), type=_text, choices=ARCHS, default=d.arch)
    add(*_names("epochs"), type=integer, default=d.epochs)
    add(*_names("lr"), type=number, default=d.lr, help="Adam learning rate")
    add(*_names("batch-size"), type=integer, default=d.batch_size)
    add(*_names("image-size"), type=integer, default=d.image_size)
    add(*_names("patience"), type=integer, default=d.patience,
        help="early stopping: epochs without a lower valid loss (0 disables)")
    add(*_names("seed"), type=integer, default=d.seed)
    add(*_names("workers"), type=integer, default=-1, help="DataLoader workers (-1: auto)")
    add(*_names("threads"), type=integer, default=0, help="torch threads (0: auto)")
    add(*_names("weights"), type=_text, default=None,
        help="backbone weights: imagenet, none, a file or an s3:// URI (SM_CHANNEL_WEIGHTS wins)")
    add(*_names("baseline"), type=_text, default=None,
        help="the live model to evaluate beside the candidate: model.tar.gz, a dir holding it or "
             "a model dir, or an s3:// URI (SM_CHANNEL_BASELINE wins)")
    add(*_names("data"), type=_text, default=None, help="dir or s3:// with train/valid/test")
    add(*_names("model-dir"), type=_text, default=None)
    add(*_names("checkpoint-dir"), type=_text, default=None)
    add(*_names("output-data-dir"), type=_text, default=None)
    _flag(p, "train-backbone", d.train_backbone, "fine-tune the backbone too")
    _flag(p, "augment", d.augment, "random resized crop + flip on train images")
    _flag(p, "cache-features", d.cache_features, "cache frozen-backbone features")
    _flag(p, "bf16", False, "bfloat16 autocast where the CPU/GPU supports it")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args, unknown = build_parser().parse_known_args(argv)
    # SageMaker may hand its own bookkeeping keys (sagemaker_program, ...) to the script.
    stray = [a for a in unknown if a.startswith("--") and not a.startswith("--sagemaker_")]
    if stray:
        raise InputError(f"unknown hyperparameter(s): {' '.join(stray)}")
    _validate(args)
    return args


def _peek_output_dir(argv: list[str]) -> str | None:
    """--output-data-dir before full parsing, so even argument errors leave a failure file."""
    for i, token in enumerate(argv):
        name, _, value = token.partition("=")
        if name in ("--output-data-dir", "--output_data_dir"):
            return value or (argv[i + 1] if i + 1 < len(argv) else None)
    return None


def _validate(args: argparse.Namespace) -> None:
    rules = [("epochs", args.epochs >= 1, ">= 1"),
             ("lr", math.isfinite(args.lr) and args.lr > 0, "> 0"),
             ("batch_size", args.batch_size >= 1, ">= 1"),
             ("image_size", 16 <= args.image_size <= 4096, "between 16 and 4096"),
             ("patience", args.patience >= 0, ">= 0"),
             ("seed", args.seed >= 0, ">= 0"),
             ("workers", args.workers >= -1, ">= -1"),
             ("threads", args.threads >= 0, ">= 0")]
    for name, ok, rule in rules:
        if not ok:
            raise InputError(f"invalid hyperparameter {name}={getattr(args, name)}: "
                             f"must be {rule}")


# --------------------------------------------------------------------------- locations
def resolve_data(args: argparse.Namespace, env: Mapping[str, str], staging: Path
                 ) -> dict[str, Path]:
    """Local split directories from --data or the SageMaker channels (downloading s3://)."""
    if args.data:
        return _splits_under(_stage(args.data, staging / "data"), args.data)
    separate = {"train": env.get("SM_CHANNEL_TRAIN"),
                "valid": env.get("SM_CHANNEL_VALID") or env.get("SM_CHANNEL_VALIDATION"),
                "test": env.get("SM_CHANNEL_TEST")}
    if separate["valid"] or separate["test"]:
        for split, path in separate.items():
            if not path:
                raise InputError(f"missing channel: {split} (set SM_CHANNEL_{split.upper()}, "
                                 "or one 'training' channel with train/valid/test)")
        return {split: Path(path) for split, path in separate.items()}
    root = env.get("SM_CHANNEL_TRAINING") or env.get("SM_CHANNEL_TRAIN")
    if not root:
        raise InputError("no training data: pass --data DIR|s3://... or set "
                         "SM_CHANNEL_TRAINING")
    return _splits_under(Path(root), root)


def _stage(uri: str, dest: Path) -> Path:
    if not storage.is_s3(uri):
        return Path(uri)
    try:
        count = storage.download_prefix(uri, dest)
    except Exception as exc:  # botocore raises many types; the message names the problem
        raise InputError(f"cannot download {uri}: {exc}") from None
    if count == 0:
        raise InputError(f"no objects under {uri}")
    return dest


def _splits_under(root: Path, shown: str) -> dict[str, Path]:
    if not root.is_dir():
        raise InputError(f"data directory not found: {shown}")
    found = {split: resolve_split_dir(root, split) for split in SPLITS}
    missing = [split for split, path in found.items() if path is None]
    if missing:
        raise InputError(f"missing {'/'.join(missing)} split folder(s) in {shown}")
    return found


def resolve_model_dir(args: argparse.Namespace, env: Mapping[str, str], staging: Path
                      ) -> tuple[Path, str | None]:
    """(local dir to write, s3 URI to upload it to or None)."""
    target = args.model_dir or env.get("SM_MODEL_DIR") or "model"
    if storage.is_s3(target):
        return staging / "model", target
    return Path(target), None


def resolve_checkpoint_dir(args: argparse.Namespace, env: Mapping[str, str],
                           model_dir: Path, model_uri: str | None) -> Path:
    """--checkpoint-dir, SM_CHECKPOINT_DIR, else a `checkpoints` folder beside the model dir
    (/opt/ml/checkpoints under SageMaker). For an s3 model dir: a stable per-URI temp folder."""
    if args.checkpoint_dir or env.get("SM_CHECKPOINT_DIR"):
        return Path(args.checkpoint_dir or env["SM_CHECKPOINT_DIR"])
    if model_uri:
        digest = hashlib.sha1(model_uri.encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / "stepml-checkpoints" / digest
    return model_dir.resolve().parent / "checkpoints"


def failure_paths(output_dir: str | None, env: Mapping[str, str]) -> list[Path]:
    """SageMaker reads $SM_OUTPUT_DIR/failure (/opt/ml/output/failure); the output data dir
    gets a copy too, for runs outside SageMaker."""
    paths = [Path(env["SM_OUTPUT_DIR"]) / "failure"] if env.get("SM_OUTPUT_DIR") else []
    if output_dir:
        out = Path(output_dir)
        paths.append(out / "failure")
        if out.name == "data" and out.parent.name == "output":
            paths.append(out.parent / "failure")
    if Path("/opt/ml/output").is_dir():
        paths.append(Path("/opt/ml/output/failure"))
    return list(dict.fromkeys(paths))


def write_failure(message: str, output_dir: str | None, env: Mapping[str, str]) -> None:
    for path in failure_paths(output_dir, env):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(message + "\n")
        except OSError:
            pass  # reporting must never mask the original error


# --------------------------------------------------------------------------- resources
def cpu_budget(env: Mapping[str, str]) -> int:
    cores = len(os.sched_getaffinity(0))
    return min(cores, int(env["SM_NUM_CPUS"])) if env.get("SM_NUM_CPUS") else cores


def resolve_threads(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Threads = cores, split between the processes of one host (LOCAL_WORLD_SIZE)."""
    if args.threads:
        return args.threads
    if env.get("OMP_NUM_THREADS"):
        return max(1, int(env["OMP_NUM_THREADS"]))
    return max(1, cpu_budget(env) // max(1, int(env.get("LOCAL_WORLD_SIZE", "1"))))


def resolve_workers(args: argparse.Namespace, threads: int) -> int:
    """Auto: one loader process per thread (at most 4) so JPEG decoding overlaps compute."""
    return args.workers if args.workers >= 0 else min(4, threads)


def bf16_supported(device) -> bool:
    import torch
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# --------------------------------------------------------------------------- the run
def main(argv: list[str] | None = None) -> int:
    env = os.environ
    argv = sys.argv[1:] if argv is None else list(argv)
    output_dir = _peek_output_dir(argv) or env.get("SM_OUTPUT_DATA_DIR")
    try:
        args = parse_args(argv)
        with tempfile.TemporaryDirectory(prefix="stepml-train-") as tmp:
            run(args, env, Path(tmp))
        return 0
    except InputError as exc:
        message = str(exc).replace("\n", " ")
        write_failure(message, output_dir, env)
        print(f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except Exception as exc:
        write_failure(f"{type(exc).__name__}: {exc}".replace("\n", " "), output_dir, env)
        raise


def run(args: argparse.Namespace, env: Mapping[str, str], staging: Path) -> dict:
    """Resolve everything, train, and (rank 0) write the artifacts; return the metrics."""
    from training.dataset import check_layout

    split_dirs = resolve_data(args, env, staging)
    classes = check_layout(split_dirs)  # before any collective (and torch): all ranks fail alike

    import torch

    from training import distributed as D

    info, rendezvous = D.detect(env)
    model_dir, model_uri = resolve_model_dir(args, env, staging)
    cfg = TrainConfig(
        split_dirs=split_dirs, model_dir=str(model_dir),
        checkpoint_dir=str(resolve_checkpoint_dir(args, env, model_dir, model_uri)),
        output_data_dir=args.output_data_dir or env.get("SM_OUTPUT_DATA_DIR"),
        arch=args.arch, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        image_size=args.image_size, patience=args.patience, seed=args.seed,
        train_backbone=args.train_backbone, augment=args.augment,
        cache_features=args.cache_features, bf16=args.bf16, workers=args.workers,
        threads=resolve_threads(args, env), weights=args.weights)
    cfg.workers = resolve_workers(args, cfg.threads)
    torch.set_num_threads(cfg.threads)
    device = _device(env, info)
    log = _logger(info)
    if cfg.bf16 and not bf16_supported(device):
        log("warning: bf16 requested but not supported here; training in fp32", err=True)
        cfg.bf16 = False
    D.init(info, rendezvous, device)
    try:
        result = _train(cfg, classes, info, device, log, staging, model_uri,
                        env.get("SM_CHANNEL_BASELINE") or args.baseline)
    except BaseException:
        D.shutdown(info, finished=False)
        raise
    D.shutdown(info)
    return result


def _device(env: Mapping[str, str], info):
    import torch
    if torch.cuda.is_available() and env.get("SM_NUM_GPUS", "1") != "0":
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def _logger(info):
    def log(line: str, err: bool = False) -> None:
        if info.is_main:
            print(line, file=sys.stderr if err else sys.stdout, flush=True)
    return log


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # same seed on every rank: identical frozen backbones


def _train(cfg: TrainConfig, classes: list[str], info, device, log, staging: Path,
           model_uri: str | None, baseline: str | None = None) -> dict:
    import torch

    from training import distributed as D
    from training.dataset import eval_transform, image_folder, train_transform
    from training.engine import Context, Splits, fit
    from training.model import build_model, load_backbone_weights, set_backbone_trainable

    _seed_everything(cfg.seed)
    net = build_model(cfg.arch, len(classes))
    weights = _weights_file(cfg.weights, staging)
    pretrained = load_backbone_weights(net, cfg.arch, weights)
    set_backbone_trainable(net, cfg.train_backbone)
    net = net.to(device, memory_format=torch.channels_last)

    size = cfg.image_size
    train_tf = train_transform(size) if cfg.augment else eval_transform(size)
    splits = Splits(*(image_folder(cfg.split_dirs[s], train_tf if s == "train" else
                                   eval_transform(size)) for s in SPLITS))
    ctx = Context(cfg=cfg, info=info, device=device, workers=cfg.workers, log=log)
    log(f"train_images={len(splits.train)} valid_images={len(splits.valid)} "
        f"test_images={len(splits.test)} classes={len(classes)} world_size={info.world_size} "
        f"threads={cfg.threads} workers={cfg.workers} device={device.type}")
    metrics = fit(net, splits, classes, ctx)

    skipped = sorted(set().union(*D.gather_objects(ctx.skipped, info)))
    for path in skipped[:MAX_SKIP_WARNINGS]:
        log(f"warning: skipped unreadable image {path}", err=True)
    if len(skipped) > MAX_SKIP_WARNINGS:
        log(f"warning: ... and {len(skipped) - MAX_SKIP_WARNINGS} more unreadable images",
            err=True)
    metrics.update(skipped_images=len(skipped), skipped_files=skipped[:100],
                   world_size=info.world_size, threads=cfg.threads, workers=cfg.workers)
    log(f"best_epoch={metrics['best_epoch']} best_valid_loss={metrics['best_valid_loss']:.4f} "
        f"best_valid_acc={metrics['best_valid_acc']:.4f}")
    log(f"test_acc={metrics['test_acc']:.4f} test_loss={metrics['test_loss']:.4f}")
    # Rank 0 alone, before the artifacts: the other ranks wait at shutdown's barrier meanwhile.
    report = _evaluation(net, splits, classes, metrics, ctx, baseline, staging) if info.is_main else None
    log(f"skipped_images={len(skipped)}")
    log(f"train_seconds={metrics['train_seconds']:.3f}")
    if info.is_main:
        _write_artifacts(net, classes, cfg, metrics, pretrained, info, report)
        if model_uri:
            storage.upload_dir(cfg.model_dir, model_uri)
    return metrics


def _evaluation(net, splits, classes: list[str], metrics: dict, ctx, baseline: str | None,
                staging: Path) -> dict:
    """evaluation.json's content; logs baseline_test_acc, or a warning when the baseline fails."""
    from training import evaluation as E

    y_true, y_pred = E.predict_split(net, splits, "test", ctx)
    candidate = E.classification_report(y_true, y_pred, classes)
    live = _baseline_report(baseline, splits.test.root, classes, ctx, staging)
    if live and "error" in live:
        ctx.log(f"warning: baseline not evaluated: {live['error']}", err=True)
    elif live:
        ctx.log(f"baseline_test_acc={live['accuracy']:.4f}")
    return E.build_report(E.split_summary(splits.test, classes), candidate, live,
                          metrics["history"])


def _baseline_report(baseline: str | None, test_dir: str, classes: list[str], ctx,
                     staging: Path) -> dict | None:
    """The baseline's report, {"error": reason} when it cannot be had, None without one: the
    live model being unreadable must never cost the candidate its training run."""
    from training import evaluation as E

    if not baseline:
        return None
    try:
        if storage.is_s3(baseline):
            baseline = str(storage.download_file(baseline, staging / "baseline" / E.ARCHIVE))
        return E.evaluate_baseline(baseline, test_dir, classes, ctx)
    except Exception as exc:  # S3, tar, pickle, shape errors: all just mean "no baseline score"
        reason = str(exc) if isinstance(exc, E.BaselineError | InputError) else \
            f"{type(exc).__name__}: {exc}"
        return {"error": reason.replace("\n", " ")}


def _write_artifacts(net, classes: list[str], cfg: TrainConfig, metrics: dict,
                     pretrained: str | None, info, report: dict) -> None:
    import torch

    from training.dataset import IMAGENET_MEAN, IMAGENET_STD
    from training.evaluation import write_report
    from training.model import HIDDEN

    out = Path(cfg.model_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    torch.save(state, out / "model.pth")
    # classes.json maps the output index (as a string key) to the class folder name
    _dump(out / "classes.json", {str(i): name for i, name in enumerate(classes)})
    _dump(out / "hyperparameters.json", {
        **cfg.hyperparameters(), "num_classes": len(classes), "hidden": HIDDEN,
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "eval_transform": "resize(image_size) + center_crop(image_size) + normalize(mean, std)",
        "pretrained": pretrained,
        "world_size": info.world_size, "torch": torch.__version__})
    _dump(out / "metrics.json", metrics)
    write_report(out / "evaluation.json", report)  # inside model.tar.gz: the registry reads it there
    _copy_serving_code(out)
    if cfg.output_data_dir:
        _dump(Path(cfg.output_data_dir) / "metrics.json", metrics)
        write_report(Path(cfg.output_data_dir) / "evaluation.json", report)


def _weights_file(weights: str | None, staging: Path) -> str | None:
    """An s3:// weights URI as a local file: SageMaker's copy in the weights channel when the job
    has one (network-isolated jobs get their inputs only that way), else a download."""
    if not weights or not storage.is_s3(weights):
        return weights
    channel = os.environ.get("SM_CHANNEL_WEIGHTS")
    if channel:
        files = sorted(p for p in Path(channel).rglob("*") if p.is_file())
        if len(files) != 1:
            raise InputError(f"the weights channel must hold exactly one file, found {len(files)}")
        return str(files[0])
    return str(storage.download_file(weights, staging / "weights.pth"))


def _copy_serving_code(out: Path) -> None:
    """The serving code shipped beside this package (the training bundle's serving/) becomes
    the model's code/: SageMaker's PyTorch inference container imports user code from
    model.tar.gz's code/ and nowhere else. Run from a source tree without it, nothing is copied."""
    serving = Path(__file__).resolve().parent.parent / SERVING_DIR
    if serving.is_dir():
        shutil.copytree(serving, out / "code", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))


def _dump(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
