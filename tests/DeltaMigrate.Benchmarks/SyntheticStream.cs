using DeltaMigrate.Engine.Streams;

namespace DeltaMigrate.Benchmarks;

/// <summary>Pieces shared by the benchmarks that build a QEMU migration stream in memory.</summary>
internal static class SyntheticStream
{
    /// <summary>Completion: RAM's END with nothing left, then 64 KiB of device state (opaque to the engine) ending in EOF.</summary>
    public static async Task WriteCompletionAsync(MigrationStreamWriter w, uint ramSection, Random rng)
    {
        await w.WriteSectionEndAsync(ramSection);
        await w.WriteEosAsync();
        await w.WriteFooterAsync(ramSection);
        var tail = new byte[64 * 1024];
        rng.NextBytes(tail.AsSpan(0, 16 * 1024));
        tail[^1] = 0x00; // QEMU_VM_EOF
        await w.WriteRawAsync(tail);
    }
}
