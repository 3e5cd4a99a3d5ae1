"""The narrow interface between the dashboard and whatever runs the model. Imports nothing heavy.

Pages and the CLI only call a Backend: "describe the model", "tokenize this", "run the logit
lens on this", ... and get the typed results of lens/results.py back. ``EngineBackend``
(lens/engine_backend.py) answers over any engine (lens/engine/: hooks here, nnsight here or on
NDIF); a backend on a GPU box implements the same methods and no page changes.
Every method takes the text (or texts) and one options dataclass of lens/options.py, which checks
itself and names the method's cache key. Layers are 1-based (as in the lens rows L1..Ln), positions 0-based (None: the last).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from .options import (Ablation, CellPatchOptions, ComparisonOptions, ContributionOptions, FitOptions, FlowOptions,
                      GenerateOptions, GeometryOptions, HeadOptions, LanguageOptions, LensOptions, NodeOptions,
                      NoiseOptions, PatchOptions, Progress, ProjectionOptions, RolloutOptions, RouteOptions)
from .results import (AttentionContributions, FlowResult, Generation, GenerationAttention, GeometryResult,
                      HeadPatterns, HeadSummary, LanguageMass, LensComparison, LensFit, LogitLensResult, ModelComparison,
                      NodeDetail, NoiseTraceResult,
                      PatchResult, ProjectionResult, RolloutResult, RouteGraph)
from .suites.options import PairSuiteOptions, SuiteOptions
from .suites.results import SuiteLensResult, SuitePatchResult
from .suites.suite import Suite
from .weights.options import HeadWeightOptions, NeuronOptions, NeuronPageOptions
from .weights.results import HeadWeights, NeuronPage, NeuronScores
from .attribution.options import DLAOptions, KnockoutOptions, SublayerOptions
from .attribution.results import DLAResult, KnockoutResult, SublayerLensResult
from .circuits.options import AttributeOptions, CircuitOptions
from .circuits.results import AttributionResult, CircuitResult
from .steering.options import SteerOptions
from .steering.results import SteerResult
from .steering.store import SavedVector
from .probes.data import ProbeSet
from .probes.options import ProbeOptions
from .probes.results import ProbeResult
from .explain.options import AttentionWeightOptions, CellOptions, NeuronAtOptions
from .explain.results import AttentionExplanation, CellExplanation, NeuronExplanation
from .sampling.options import SampleOptions
from .sampling.results import NextLogits, SampleResult
from .anatomy.options import AnatomyOptions, ContrastiveOptions
from .anatomy.results import AnatomyResult, AnatomySuiteResult, CKAResult, ContrastiveResult
from .attribution.options import DLAOptions, KnockoutOptions, SublayerOptions
from .attribution.results import DLAResult, KnockoutResult, SublayerLensResult


@dataclass(frozen=True)
class ModelInfo:
    """What a page needs to know about the model before asking for any analysis."""

    name: str
    source: str  # bundled | tiny | local | gguf | hub
    model_type: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_model: int
    vocab_size: int
    context_length: int  # the model's own context window
    token_limit: int  # the most prompt tokens this backend accepts (at most context_length)
    has_lm_head: bool  # predicts next tokens: the logit lens and vocabulary projections apply
    is_causal: bool  # a decoder: position i reads positions <= i only
    post_ln: bool  # normalises after each sub-block: no additive residual stream
    supports_routes: bool
    routes_note: str  # why routes do not apply ("" when they do)
    fingerprint: str
    corpus_limit: int = 100  # sentences in one projection corpus
    corpus_token_limit: int = 4096  # their tokens together
    has_head_sites: bool = False  # each head's output is a site of its own (patch or ablate one head)
    has_qkv_sites: bool = False  # separate q, k, v projections are sites (circuits give each head its own inputs)


@runtime_checkable
class Backend(Protocol):
    """Exactly what pages and the CLI call (tests/test_structure.py holds them to it)."""

    def info(self) -> ModelInfo: ...

    def tokenize(self, text: str) -> list[str]: ...

    def token_ids(self, text: str) -> list[int]: ...  # the exact ids the model reads (kept with a saved run)

    def logit_lens(self, text: str, options: LensOptions = LensOptions(),
                   progress: Progress | None = None) -> LogitLensResult: ...

    def lens_fits(self) -> list[LensFit]: ...

    def fit_lens(self, options: FitOptions = FitOptions(), progress: Progress | None = None) -> LensFit: ...

    def lens_comparison(self, text: str, options: ComparisonOptions = ComparisonOptions()) -> LensComparison: ...

    def latent_language(self, text: str, options: LanguageOptions = LanguageOptions()) -> LanguageMass: ...

    def generate(self, text: str, options: GenerateOptions = GenerateOptions()) -> Generation: ...

    def generation_lens(self, text: str, options: GenerateOptions = GenerateOptions(),
                        lens: LensOptions = LensOptions()) -> LogitLensResult: ...

    def generation_attention(self, text: str, options: GenerateOptions = GenerateOptions()) -> GenerationAttention: ...

    def projection(self, texts: str | Sequence[str], options: ProjectionOptions = ProjectionOptions(),
                   progress: Progress | None = None) -> ProjectionResult: ...

    def geometry(self, texts: str | Sequence[str], options: GeometryOptions = GeometryOptions()) -> GeometryResult: ...

    def rollout(self, text: str, options: RolloutOptions = RolloutOptions()) -> RolloutResult: ...

    def attention_flow(self, text: str, options: FlowOptions = FlowOptions()) -> FlowResult: ...

    def head_patterns(self, text: str, options: HeadOptions) -> HeadPatterns: ...

    def head_summary(self, text: str) -> HeadSummary: ...

    # The weight space (lens/weights/): the neurons that write a token, one neuron's page, heads' OV and composition.
    def neurons(self, options: NeuronOptions, text: str | None = None,
                progress: Progress | None = None) -> NeuronScores: ...  # no token: the top-1 after ``text``

    def neuron(self, text: str, options: NeuronPageOptions, progress: Progress | None = None) -> NeuronPage: ...

    def head_weights(self, options: HeadWeightOptions = HeadWeightOptions(),
                     progress: Progress | None = None) -> HeadWeights: ...

    def contributions(self, text: str, options: ContributionOptions) -> AttentionContributions: ...

    def route_graph(self, text: str, options: RouteOptions = RouteOptions()) -> RouteGraph: ...

    def node_detail(self, text: str, options: NodeOptions) -> NodeDetail: ...

    def patch(self, clean: str, corrupt: str, options: PatchOptions,
              progress: Progress | None = None) -> PatchResult: ...

    def noise_trace(self, prompt: str, options: NoiseOptions,
                    progress: Progress | None = None) -> NoiseTraceResult: ...

    def patched_lens(self, clean: str, corrupt: str, options: CellPatchOptions) -> LogitLensResult: ...

    def ablated_lens(self, text: str, ablation: Ablation, lens: LensOptions = LensOptions()) -> LogitLensResult: ...

    def compare_with(self, other: "Backend", text: str) -> ModelComparison: ...

    # Prompt suites (lens/suites/): one finding over many prompts; aggregate with lens/suites/aggregate.py.
    def lens_suite(self, suite: Suite, options: SuiteOptions = SuiteOptions(),
                   progress: Progress | None = None) -> SuiteLensResult: ...

    def patch_suite(self, suite: Suite, options: PairSuiteOptions = PairSuiteOptions(),
                    progress: Progress | None = None) -> SuitePatchResult: ...

    # Who writes the answer (lens/attribution/): direct logit attribution, the sub-layer lens, attention knockout.
    def dla(self, text: str, options: DLAOptions = DLAOptions()) -> DLAResult: ...

    def sublayer_lens(self, text: str, options: SublayerOptions = SublayerOptions()) -> SublayerLensResult: ...

    def knockout(self, text: str, options: KnockoutOptions = KnockoutOptions(),
                 progress: Progress | None = None) -> KnockoutResult: ...

    # Attribution and circuits (lens/circuits/): AtP checked against real patching; EAP circuits, their faithfulness.
    def attribute(self, clean: str, corrupt: str, options: AttributeOptions,
                  progress: Progress | None = None) -> AttributionResult: ...

    def circuit(self, clean: str, corrupt: str, options: CircuitOptions,
                progress: Progress | None = None) -> CircuitResult: ...

    # Steering (lens/steering/): plain and steered continuations, the target's lens in both, the dose-response.
    def steer(self, prompt: str, options: SteerOptions, progress: Progress | None = None) -> SteerResult: ...

    def steering_vector(self, options: SteerOptions, name: str = "") -> SavedVector: ...  # to save by name

    # Probes (lens/probes/): per-layer logistic-regression probes of a labelled set, cross-validated.
    def probe(self, probe_set: ProbeSet, options: ProbeOptions | None = None,
              progress: Progress | None = None) -> ProbeResult: ...

    # Layer anatomy (lens/anatomy/): per-layer norms, block changes, skipping and swapping blocks, CKA, outliers.
    def anatomy(self, text: str, options: AnatomyOptions = AnatomyOptions()) -> AnatomyResult: ...

    def cka_with(self, other: "Backend", text: str) -> CKAResult: ...

    def contrastive(self, text: str, options: ContrastiveOptions) -> ContrastiveResult: ...

    def anatomy_suite(self, suite: Suite, options: AnatomyOptions = AnatomyOptions(),
                      progress: Progress | None = None) -> AnatomySuiteResult: ...  # every prompt's anatomy

    # Show the work (lens/explain/): one lens cell, one attention weight, one neuron at one position, step by step.
    def explain_cell(self, text: str, options: CellOptions) -> CellExplanation: ...

    def explain_attention(self, text: str, options: AttentionWeightOptions) -> AttentionExplanation: ...

    def explain_neuron(self, text: str, options: NeuronAtOptions) -> NeuronExplanation: ...

    # Sampling on the spot (lens/sampling/): the prompt's final logits (cached), resampled without a model run.
    def next_logits(self, text: str) -> NextLogits: ...

    def sample(self, text: str, options: SampleOptions) -> SampleResult: ...
