import sys, transformers
for n in ["Qwen3_5ForConditionalGeneration","Qwen3_5MoeForConditionalGeneration","Qwen3VLForConditionalGeneration","Lfm2VlForConditionalGeneration","Mistral3ForConditionalGeneration","Qwen2_5_VLForConditionalGeneration","Gemma3ForConditionalGeneration"]:
    transformers.__dict__.setdefault(n, type(n, (), {}))
_orig = transformers.AutoConfig.from_pretrained.__func__
def _fp(cls, *a, **k):
    c = _orig(cls, *a, **k)
    if getattr(c, "rope_scaling", 0) is None:
        c.rope_scaling = {"rope_type": "default", "rope_theta": c.rope_theta}
    return c
transformers.AutoConfig.from_pretrained = classmethod(_fp)
from onnxruntime_genai.models import builder
sys.argv=["builder"]+sys.argv[1:]
args = builder.get_args()
extra = builder.parse_extra_options(args.model_name, args.input, args.output, args.precision, args.execution_provider, args.cache_dir, args.extra_options, builder_config_version=args.builder_config_version, target_options=args.target_options, drafter_options=args.drafter_options, speculative_options=args.speculative_options, runtime_config=args.runtime_config, search=args.search)
builder.create_model(args.model_name, args.input, args.output, args.precision, args.execution_provider, args.cache_dir, **extra)
