"""``neurons``, ``neuron`` and ``heads-weights``: the weight space, as a table or JSON."""
from __future__ import annotations

from ..errors import LensError
from .common import backend, checked_prompt, model_args, print_json, terminal_progress

DEFAULT_PROMPT = "The capital of France is"  # the neuron's activation is shown on it when no prompt is given


def cmd_neurons(args) -> int:
    from ..model.tokens import visible
    from ..weights.options import NeuronOptions

    options = NeuronOptions(token=args.token, top=args.top, top_k=args.top_k)
    options.check()  # before the model loads
    text = None
    if args.token is None:
        if args.prompt is None and args.prompt_file is None:
            raise LensError("give --token T (e.g. ' Paris'), or --prompt P: the neurons then write its top-1")
        text = checked_prompt(args)
    r = backend(args).neurons(options, text, progress=terminal_progress)
    terminal_progress.close()
    if args.json:
        return print_json(r)
    print(f"{r.model}: the MLP neurons whose output vector raises {visible(r.token)} most (logit per unit of "
          f"activation, through the final norm's weight; {r.n_layers} × {r.n_neurons} neurons)")
    K = len(r.neurons)
    for title, listed, off in (("promoters", r.neurons, 0), ("suppressors", r.suppressors, K)):
        print(f"{title}:")
        for i, x in enumerate(listed):
            print(f"  L{x['layer']:<3} N{x['neuron']:<6} {x['score']:+8.4f}   raises "
                  f"{' '.join(visible(t) for t in r.top_tokens[off + i][:5])}")
    return 0


def cmd_neuron(args) -> int:
    from ..model.tokens import visible
    from ..weights.options import NeuronPageOptions

    if args.prompt is None and args.prompt_file is None:
        args.prompt = DEFAULT_PROMPT
    prompt = checked_prompt(args)
    options = NeuronPageOptions(layer=args.layer, neuron=args.neuron, top_k=args.top_k, contexts=args.contexts)
    options.check()
    r = backend(args).neuron(prompt, options, progress=terminal_progress)
    terminal_progress.close()
    if args.json:
        return print_json(r)
    print(f"{r.model}: neuron {r.neuron} of block {r.layer}")
    print("raises: " + " ".join(f"{visible(t)} ({v:+.3f})" for t, v in zip(r.top_tokens, r.top_values)))
    print("lowers: " + " ".join(f"{visible(t)} ({v:+.3f})" for t, v in zip(r.bottom_tokens, r.bottom_values)))
    print("on the prompt: " + " ".join(f"{visible(t)}={a:+.2f}" for t, a in zip(r.prompt_tokens, r.activation)))
    for title, contexts, peaks, values in (("highest", r.contexts, r.context_peak, r.context_values),
                                           ("lowest", r.low_contexts, r.low_context_peak, r.low_context_values)):
        print(f"its {title} activations in the {r.corpus} corpus ({r.corpus_tokens} tokens):")
        for c, k, v in zip(contexts, peaks, values):
            print(f"  {v:+7.3f}  {visible(''.join(c[:k]))}[[{visible(c[k])}]]{visible(''.join(c[k + 1:]))}")
    return 0


def cmd_heads(args) -> int:
    from ..model.tokens import visible
    from ..weights.options import HeadWeightOptions

    options = HeadWeightOptions(composition=args.composition, top_k=args.top_k)
    options.check()
    r = backend(args).head_weights(options, progress=terminal_progress)
    terminal_progress.close()
    if args.json:
        return print_json(r)
    print(f"{r.model}: each head's OV copy score over the corpus's {r.vocab} most frequent tokens (mean z of a token's "
          f"own logit), best copiers first")
    order = r.copy_score.flatten().argsort()[::-1]
    for i in order[:args.top]:
        l, h = divmod(int(i), r.n_heads)
        print(f"  {r.labels[i]:<8} {r.copy_score[l, h]:+6.2f}   copies "
              f"{' '.join(visible(t) for t in r.copy_tokens[l][h][:5])}")
    print(f"strongest {r.composition.upper()}-composition (earlier head → later head):")
    flat = r.scores.flatten().argsort()[::-1][:args.top]
    n = len(r.labels)
    for i in flat:
        a, b = divmod(int(i), n)
        print(f"  {r.labels[a]:<8} → {r.labels[b]:<8} {r.scores[a, b]:.3f}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("neurons", help="the MLP neurons whose output vectors write a token (and those that "
                                       "suppress it)")
    model_args(p)
    p.add_argument("--token", default=None, help="one token, e.g. ' Paris' (with its leading space); default: the "
                                                 "model's top-1 after --prompt")
    p.add_argument("--top", type=int, default=20, help="neurons listed each side (default 20)")
    p.add_argument("--top-k", type=int, default=8, help="tokens listed per neuron (default 8)")
    p.set_defaults(func=cmd_neurons)

    n = sub.add_parser("neuron", help="one MLP neuron: its vocabulary, its activation on a prompt, its top "
                                      "contexts in the shipped corpus")
    model_args(n)
    n.add_argument("--layer", type=int, required=True, help="the block, 1-based")
    n.add_argument("--neuron", type=int, required=True, help="the neuron, 0-based")
    n.add_argument("--top-k", type=int, default=15, help="tokens listed each way (default 15)")
    n.add_argument("--contexts", type=int, default=10, help="top-activating contexts (default 10, at most 20)")
    n.set_defaults(func=cmd_neuron)

    h = sub.add_parser("heads-weights", help="each head's OV copying and the composition scores between heads")
    model_args(h)
    h.add_argument("--composition", choices=["q", "k", "v"], default="v", help="which composition (default v)")
    h.add_argument("--top", type=int, default=10, help="heads and pairs listed (default 10)")
    h.add_argument("--top-k", type=int, default=8, help="tokens kept per head (default 8)")
    h.set_defaults(func=cmd_heads)
