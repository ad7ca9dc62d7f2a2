using DeltaMigrate.Engine.Delta;
using DeltaMigrate.Engine.Transport;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Migration;

/// <summary>Our tunnel's two ends for one migration (Delta and Lz4 modes); both null with QEMU's transport.</summary>
internal sealed class TunnelEnds : IAsyncDisposable
{
    private readonly CancellationTokenSource _stopping = new();

    /// <summary>
    /// The tunnel's own lifetime. Not the user's token: on Ctrl-C QEMU must be cancelled first
    /// (so it reports "cancelled"); the tunnel then ends when QEMU closes its socket.
    /// </summary>
    public CancellationToken Stopping => _stopping.Token;

    public MigrationToken? Token { get; set; }
    public string? Host { get; set; }
    public int Port { get; set; }

    public DeltaSource? Source { get; set; }
    public Task? Sending { get; set; }

    /// <summary>Only when the destination is on this host and we run its receiver too.</summary>
    public DeltaReceiver? Receiver { get; set; }
    public Task<TunnelStats>? Receiving { get; set; }

    /// <summary>Waits for both ends to finish; returns what went wrong, or null.</summary>
    public async Task<string?> FinishAsync(ILogger logger)
    {
        string? error = null;
        foreach (var task in new[] { Sending, Receiving })
        {
            if (task is null)
            {
                continue;
            }

            try
            {
                // QEMU has finished writing (or failed); the tunnel drains within its bounded buffers.
                await task.WaitAsync(TimeSpan.FromSeconds(60));
            }
            catch (Exception e)
            {
                logger.LogDebug("Tunnel end failed: {Error}", e.Message);
                error ??= e.Message;
            }
        }

        return error;
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        if (Source is not null)
        {
            await Source.DisposeAsync();
        }

        if (Receiver is not null)
        {
            await Receiver.DisposeAsync();
        }

        // Observe whatever is left so nothing surfaces as an unobserved exception.
        foreach (var task in new[] { Sending, Receiving })
        {
            if (task is not null)
            {
                try
                {
                    await task.WaitAsync(TimeSpan.FromSeconds(5));
                }
                catch (Exception)
                {
                    // already reported by FinishAsync, or the migration ended another way
                }
            }
        }

        _stopping.Dispose();
    }
}
