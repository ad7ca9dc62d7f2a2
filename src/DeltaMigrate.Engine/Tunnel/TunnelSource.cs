using System.Net.Sockets;
using DeltaMigrate.Engine.Delta;
using DeltaMigrate.Engine.Streams;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Tunnel;

/// <summary>
/// The sending end: a unix socket the source QEMU migrates into (<see cref="QemuUri"/>), and the
/// tunnel to the receiver. Delta mode rewrites the stream (<see cref="StreamTranscoder"/>); Lz4 mode
/// carries it as it is. QEMU writes only as fast as we drain, so it measures the link's real speed.
/// </summary>
public sealed class TunnelSource : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly string _socketPath;
    private readonly TunnelSender _tunnel;
    private readonly StreamTranscoder? _transcoder;
    private readonly ILogger _logger;
    private Socket? _qemu;
    private volatile bool _cancelling;

    private readonly bool _returnPath;

    private TunnelSource(Socket listener, string socketPath, TunnelSender tunnel, StreamTranscoder? transcoder, bool returnPath, ILogger logger)
    {
        _listener = listener;
        _socketPath = socketPath;
        _tunnel = tunnel;
        _transcoder = transcoder;
        _returnPath = returnPath;
        _logger = logger;
        if (returnPath)
        {
            tunnel.ReturnPath = WriteToQemuAsync;
        }
    }

    public string QemuUri => $"unix:{_socketPath}";

    /// <summary>Null in Lz4 mode (nothing is transcoded).</summary>
    public DeltaCounters? Counters => _transcoder?.Counters;

    public TunnelStats TunnelStats => _tunnel.Stats;

    /// <summary>Delta mode: every pass over RAM the transcoder saw, exact; empty in Lz4 mode.</summary>
    public IReadOnlyList<StreamPass> Passes => _transcoder?.Passes ?? [];

    internal long? PassesOrigin => _transcoder?.PassesOrigin;

    /// <summary>Bytes QEMU has written to us so far.</summary>
    public long StreamBytes => Counters is { } c ? DeltaCounters.Read(ref c.StreamBytes) : Interlocked.Read(ref _passThroughBytes);

    private long _passThroughBytes;

    /// <summary>
    /// Listens for QEMU on <paramref name="socketPath"/>; the stream goes out through
    /// <paramref name="tunnel"/>, connected, authenticated and prepared by the caller, which keeps it
    /// for the commit afterwards. With <paramref name="returnPath"/> the destination QEMU's answers
    /// (Return frames) are written back to the source QEMU, and the stream after RAM is flushed as it
    /// comes: libvirt turns QEMU's return path on, and the source then waits for the destination's
    /// answer before it closes its stream.
    /// </summary>
    public static TunnelSource Create(string socketPath, TunnelSender tunnel, bool delta, long cacheBytes, ILogger logger, bool returnPath = false)
    {
        File.Delete(socketPath);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(socketPath));
            if (!OperatingSystem.IsWindows())
            {
                // Only our QEMU (same user) may connect; the run directory's 0700 already says so.
                File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }
            listener.Listen(1);
        }
        catch
        {
            listener.Dispose();
            throw;
        }

        return new TunnelSource(listener, socketPath, tunnel, delta ? new StreamTranscoder(cacheBytes) { FlushTail = returnPath } : null, returnPath, logger);
    }

    /// <summary>
    /// The migration is being cancelled on purpose: QEMU will cut its stream mid-page, which is then
    /// expected and logged quietly rather than as a tunnel failure.
    /// </summary>
    public void ExpectCancel() => _cancelling = true;

    /// <summary>Takes QEMU's connection and carries its stream to the end; completes once the receiver answers Loaded.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            _qemu = await _listener.AcceptAsync(cancellationToken);
            await using var fromQemu = new NetworkStream(_qemu, ownsSocket: false);
            if (_transcoder is null)
            {
                await CopyAsync(fromQemu, cancellationToken);
            }
            else
            {
                await using var toTunnel = new TunnelWriteStream(_tunnel, flushFrames: _returnPath);
                await using var writer = new MigrationStreamWriter(toTunnel, leaveOpen: true);
                await _transcoder.RunAsync(new MigrationStreamReader(fromQemu), writer, cancellationToken);
            }

            await _tunnel.CompleteAsync(cancellationToken);
            _logger.LogDebug("Tunnel complete: {Payload} stream bytes as {Wire} wire bytes", _tunnel.Stats.PayloadBytes, _tunnel.Stats.WireBytes);
        }
        catch (Exception e)
        {
            // Tell the receiver (it drops the destination's stream) and cut QEMU off: its migration fails, the VM runs on.
            if (_cancelling)
            {
                _logger.LogDebug("Delta tunnel ended by the cancellation: {Error}", e.Message);
            }
            else
            {
                _logger.LogWarning("Delta tunnel failed: {Error}", e.Message);
            }

            await _tunnel.FailAsync(e.Message);
            _qemu?.Close();
            throw;
        }
    }

    private async Task CopyAsync(NetworkStream fromQemu, CancellationToken cancellationToken)
    {
        var buffer = new byte[128 * 1024];
        int read;
        while ((read = await fromQemu.ReadAsync(buffer, cancellationToken)) > 0)
        {
            await _tunnel.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
            Interlocked.Add(ref _passThroughBytes, read);
            if (_returnPath && fromQemu.DataAvailable is false)
            {
                // QEMU paused (or waits for the destination's answer): send what we hold.
                await _tunnel.FlushAsync(cancellationToken);
            }
        }
    }

    private async ValueTask WriteToQemuAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var qemu = _qemu ?? throw new TunnelException("ReturnPathEarly", ErrorKind.ProtocolError, "The receiver relayed a return path before the source QEMU connected.");
        await using var toQemu = new NetworkStream(qemu, ownsSocket: false);
        await toQemu.WriteAsync(data, cancellationToken);
    }

    /// <summary>Closes QEMU's side; the tunnel belongs to the caller.</summary>
    public ValueTask DisposeAsync()
    {
        _qemu?.Dispose();
        _listener.Dispose();
        File.Delete(_socketPath);
        return ValueTask.CompletedTask;
    }
}
