namespace DeltaMigrate.Engine.Convergence;

/// <summary>
/// What the engine saw when QEMU's dirty-sync count moved on: the bytes still dirty, and the
/// cumulative bytes of QEMU's stream and of the wire so far.
/// </summary>
/// <param name="Round">QEMU's dirty-sync count.</param>
/// <param name="Elapsed">Since the migration started.</param>
/// <param name="RemainingBytes">QEMU's ram.remaining: dirty bytes still to send, counted raw.</param>
/// <param name="StreamBytes">QEMU's ram.transferred: its own stream (before our tunnel's deltas and compression).</param>
/// <param name="WireBytes">Bytes on the network (after deltas and compression; equal to StreamBytes without the tunnel).</param>
public sealed record RoundObservation(int Round, TimeSpan Elapsed, long RemainingBytes, long StreamBytes, long WireBytes);
