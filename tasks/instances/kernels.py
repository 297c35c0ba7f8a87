"""Compiled (numba) instance generation: one pass over one work unit's documents.

The same algorithm as tasks/instances/reference.py, drawing the same doubles from the same numpy
Generator in the same order, but over flat arrays instead of Python lists: ~50x faster per core.
numba compiles these functions on first use (a few seconds) and caches the machine code beside
this file (cache=True), so later processes start at once.

Split arrays (tasks/instances/token_index.py writes them, memory-mapped here):
  ids (tokens,) uint16/uint32, continues (tokens,) bool, sentence_offsets (sentences + 1,) int64 into
  ids, document_offsets (documents + 1,) int64 into sentences. Empty sentences and documents are gone.
Outputs (preallocated by the caller, sized by an upper bound, filled from the front):
  out_ids (tokens,), instance_offsets (instances + 1,) int64, type_zero_lengths (instances,) int32,
  labels (instances,) int8, masked_positions (masked,) uint16, masked_ids (masked,), mask_offsets
  (instances + 1,) int64; counts = [instances, tokens, masked] written so far.
"""

from __future__ import annotations

import numba

OBJECTIVE_CODES = {"nsp": 0, "sop": 1, "mlm": 2}
NO_SENTENCE_LABEL = -100  # next_sentence_label of MLM-only instances: PyTorch's ignore_index


@numba.njit(cache=True, inline="always")
def _draw_index(rng, size):
    """A uniform index in [0, size) from one double (tasks.instances.masking.draw_index)."""
    return min(int(rng.random() * size), size - 1)


@numba.njit(cache=True)
def _mask(tokens, continues, whole_word, rng, is_special, mask_id, replacement_ids, masked_lm_prob,
          max_predictions, group_starts, group_ends, order, positions_out, ids_out):
    """Mask tokens in place (tasks.instances.masking.mask_tokens); returns how many positions were written."""
    n = len(tokens)
    groups = 0
    previous_candidate = False
    for p in range(n):
        candidate = not is_special[tokens[p]]
        if candidate and previous_candidate and whole_word and continues[p]:
            group_ends[groups - 1] = p + 1
        elif candidate:
            group_starts[groups] = p
            group_ends[groups] = p + 1
            groups += 1
        previous_candidate = candidate
    budget = min(max_predictions, max(1, round(n * masked_lm_prob)))
    for k in range(groups):
        order[k] = k
    count = 0
    for k in range(groups):
        if count >= budget:
            break
        j = k + _draw_index(rng, groups - k)
        order[k], order[j] = order[j], order[k]
        start, end = group_starts[order[k]], group_ends[order[k]]
        if count + (end - start) > budget:
            continue
        for p in range(start, end):
            original = tokens[p]
            if rng.random() < 0.8:
                tokens[p] = mask_id
            elif rng.random() < 0.5:
                pass
            else:
                tokens[p] = replacement_ids[_draw_index(rng, len(replacement_ids))]
            positions_out[count] = p
            ids_out[count] = original
            count += 1
    for a in range(1, count):  # insertion sort by position: count <= max_predictions
        position, label = positions_out[a], ids_out[a]
        b = a - 1
        while b >= 0 and positions_out[b] > position:
            positions_out[b + 1], ids_out[b + 1] = positions_out[b], ids_out[b]
            b -= 1
        positions_out[b + 1], ids_out[b + 1] = position, label
    return count


@numba.njit(cache=True)
def _emit(pieces, num_pieces, label, type_zero_length, cont_scratch, s, rng, out):
    """Write one instance from pieces[:num_pieces], (start, end) id ranges or special tokens, then mask it."""
    (ids, continues, is_special, replacement_ids, cls_id, sep_id, mask_id, static, whole_word, masked_lm_prob,
     max_predictions, group_starts, group_ends, order) = s
    (out_ids, instance_offsets, type_zero_lengths, labels, masked_positions, masked_ids, mask_offsets, counts) = out
    n_instances, start = counts[0], counts[1]
    position = start
    for k in range(num_pieces):
        start_index, end_index = pieces[k, 0], pieces[k, 1]
        if start_index < 0:  # a special token: -1 = [CLS], -2 = [SEP]
            out_ids[position] = cls_id if start_index == -1 else sep_id
            cont_scratch[position - start] = False
            position += 1
        else:
            for t in range(start_index, end_index):
                out_ids[position] = ids[t]
                cont_scratch[position - start] = continues[t]
                position += 1
    masked = 0
    if static:
        m = counts[2]
        masked = _mask(out_ids[start:position], cont_scratch, whole_word, rng, is_special, mask_id, replacement_ids,
                       masked_lm_prob, max_predictions, group_starts, group_ends, order,
                       masked_positions[m:], masked_ids[m:])
    type_zero_lengths[n_instances] = type_zero_length if type_zero_length >= 0 else position - start
    labels[n_instances] = label
    counts[0] = n_instances + 1
    counts[1] = position
    counts[2] += masked
    instance_offsets[n_instances + 1] = position
    mask_offsets[n_instances + 1] = counts[2]


@numba.njit(cache=True)
def pair_pass(first, last, sentence_offsets, document_offsets, objective, max_seq_length, short_seq_prob,
              random_next_prob, pieces, cont_scratch, s, rng, out):
    """NSP/SOP instances of documents [first, last) for one pass (reference: pair_instances)."""
    max_num_tokens = max_seq_length - 3
    num_documents = len(document_offsets) - 1
    for index in range(first, last):
        first_sentence = document_offsets[index]
        num_sentences = document_offsets[index + 1] - first_sentence
        target_seq_length = max_num_tokens
        if rng.random() < short_seq_prob:
            target_seq_length = 2 + _draw_index(rng, max_num_tokens - 1)
        within_document = objective == 1 or num_documents == 1
        chunk_start = 0  # sentence positions in the document: the chunk is [chunk_start, i]
        current_length = 0
        i = 0
        while i < num_sentences:
            sentence = first_sentence + i
            current_length += sentence_offsets[sentence + 1] - sentence_offsets[sentence]
            at_end = i == num_sentences - 1
            if at_end or current_length >= target_seq_length:
                chunk_size = i + 1 - chunk_start
                if within_document and chunk_size == 1:
                    if not at_end:
                        i += 1
                        continue
                    break
                a_end = 1 + _draw_index(rng, chunk_size - 1) if chunk_size >= 2 else 1
                a0 = sentence_offsets[first_sentence + chunk_start]
                a1 = sentence_offsets[first_sentence + chunk_start + a_end]
                is_random_next = False
                if objective == 0 and not within_document:
                    is_random_next = chunk_size == 1 or rng.random() < random_next_prob
                if is_random_next:
                    target_b_length = target_seq_length - (a1 - a0)
                    random_index = _draw_index(rng, num_documents - 1)
                    if random_index >= index:
                        random_index += 1
                    r_first = document_offsets[random_index]
                    r_count = document_offsets[random_index + 1] - r_first
                    j = r_first + _draw_index(rng, r_count)
                    b0 = sentence_offsets[j]
                    b1 = b0
                    while j < r_first + r_count:
                        b1 = sentence_offsets[j + 1]
                        j += 1
                        if b1 - b0 >= target_b_length:
                            break
                    i -= chunk_size - a_end  # put the unused sentences back
                else:
                    b0 = a1
                    b1 = sentence_offsets[first_sentence + i + 1]
                label = 1 if is_random_next else 0
                if objective == 1 and rng.random() < 0.5:
                    a0, a1, b0, b1, label = b0, b1, a0, a1, 1
                while (a1 - a0) + (b1 - b0) > max_num_tokens:  # truncate_seq_pair
                    trim_a = (a1 - a0) > (b1 - b0)
                    if rng.random() < 0.5:
                        if trim_a:
                            a0 += 1
                        else:
                            b0 += 1
                    elif trim_a:
                        a1 -= 1
                    else:
                        b1 -= 1
                pieces[0, 0], pieces[1, 0], pieces[1, 1] = -1, a0, a1
                pieces[2, 0], pieces[3, 0], pieces[3, 1], pieces[4, 0] = -2, b0, b1, -2
                _emit(pieces, 5, label, (a1 - a0) + 2, cont_scratch, s, rng, out)
                chunk_start = i + 1
                current_length = 0
            i += 1


@numba.njit(cache=True)
def packed_pass(first, last, sentence_offsets, document_offsets, max_seq_length, pieces, cont_scratch, s, rng, out):
    """RoBERTa FULL-SENTENCES packing of documents [first, last) (reference: packed_instances).

    pieces: (max_seq_length, 2) scratch: [CLS], then id ranges and [SEP]s (-2) of the instance being filled."""
    max_num_tokens = max_seq_length - 2
    pieces[0, 0] = -1
    num_pieces = 1
    length = 0
    for index in range(first, last):
        for sentence in range(document_offsets[index], document_offsets[index + 1]):
            sentence_end = sentence_offsets[sentence + 1]
            for start in range(sentence_offsets[sentence], sentence_end, max_num_tokens):
                end = min(start + max_num_tokens, sentence_end)
                separator = 1 if length > 0 and sentence == document_offsets[index] and start == sentence_offsets[sentence] else 0
                if length > 0 and length + separator + (end - start) > max_num_tokens:
                    pieces[num_pieces, 0] = -2
                    _emit(pieces, num_pieces + 1, NO_SENTENCE_LABEL, -1, cont_scratch, s, rng, out)
                    num_pieces = 1
                    length = 0
                    separator = 0
                if separator:
                    pieces[num_pieces, 0] = -2
                    num_pieces += 1
                pieces[num_pieces, 0], pieces[num_pieces, 1] = start, end
                num_pieces += 1
                length += separator + end - start
    if length > 0:
        pieces[num_pieces, 0] = -2
        _emit(pieces, num_pieces + 1, NO_SENTENCE_LABEL, -1, cont_scratch, s, rng, out)


@numba.njit(cache=True)
def gather_instances(order, input_ids, instance_offsets, type_zero_lengths, masked_positions, masked_ids, mask_offsets,
                     out_ids, out_types, out_offsets, out_positions, out_masked_ids, out_mask_offsets):
    """Instances in a new order (row k = instance order[k]), with token_type_ids spelled out."""
    position = 0
    masked = 0
    for k in range(len(order)):
        row = order[k]
        start = instance_offsets[row]
        for t in range(start, instance_offsets[row + 1]):
            out_ids[position] = input_ids[t]
            out_types[position] = 0 if t - start < type_zero_lengths[row] else 1
            position += 1
        out_offsets[k + 1] = position
        for m in range(mask_offsets[row], mask_offsets[row + 1]):
            out_positions[masked] = masked_positions[m]
            out_masked_ids[masked] = masked_ids[m]
            masked += 1
        out_mask_offsets[k + 1] = masked


@numba.njit(cache=True)
def shard_counts(input_ids, instance_offsets, masked_positions, masked_ids, mask_offsets, labels, is_special,
                 mask_id, histogram_bins, max_seq_length, counts):
    """Add a shard's statistics to counts: [instances, tokens, non_special, masked, as_mask, as_random,
    as_kept, label_1, label_0, length bin 0, ...]."""
    for row in range(len(instance_offsets) - 1):
        start, end = instance_offsets[row], instance_offsets[row + 1]
        counts[0] += 1
        counts[1] += end - start
        non_special = 0
        for t in range(start, end):
            non_special += not is_special[input_ids[t]]
        for m in range(mask_offsets[row], mask_offsets[row + 1]):
            shown, original = input_ids[start + masked_positions[m]], masked_ids[m]
            non_special += is_special[shown] and not is_special[original]  # a [MASK] hides a word
            counts[3] += 1
            if shown == mask_id:
                counts[4] += 1
            elif shown != original:
                counts[5] += 1  # a random replacement that drew the original id counts as kept
            else:
                counts[6] += 1
        counts[2] += non_special
        if labels[row] == 1:
            counts[7] += 1
        elif labels[row] == 0:
            counts[8] += 1
        counts[9 + min((end - start - 1) * histogram_bins // max_seq_length, histogram_bins - 1)] += 1
