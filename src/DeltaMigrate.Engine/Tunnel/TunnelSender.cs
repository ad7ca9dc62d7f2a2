using System.Diagnostics;
using System.Net.Sockets;
using System.Threading.Channels;
using DeltaMigrate.Engine.Transport;
using K4os.Compression.LZ4;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Tunnel;

/// <summary>
/// The source end of the tunnel. <see cref="WriteAsync"/> cuts the byte stream into frames, LZ4-compresses
/// them when that helps, and queues them (at most <see cref="TunnelOptions.MaxFramesInFlight"/>) for a
/// socket writer that paces wire bytes to <see cref="TunnelOptions.BandwidthBytesPerSecond"/>. When the
/// link or the receiver is slow the queue fills and <see cref="WriteAsync"/> waits: memory stays bounded
/// and the producer (QEMU) sees the link's real speed.
/// </summary>
/// <remarks>
/// Calls are not thread-safe: one WriteAsync/FlushAsync/CompleteAsync at a time. Cancelling a write
/// breaks the tunnel (the stream would have a hole); call <see cref="FailAsync"/> or dispose afterwards.
/// </remarks>
public sealed class TunnelSender : IAsyncDisposable
{
    private static readonly TimeSpan FailTimeout = TimeSpan.FromSeconds(5);

    private readonly TunnelOptions _options;
    private readonly ILogger _logger;
    private readonly FrameLink _link;
    private readonly Channel<OutFrame> _channel;
    private readonly Channel<Reply> _replies = Channel.CreateUnbounded<Reply>();
    private readonly CancellationTokenSource _lifetime = new();
    private readonly SharedTokenBucket? _bucket;
    private readonly int _payloadCapacity;
    private readonly CodecChooser? _chooser;
    private readonly FrameEncoder? _encoder;
    private readonly Task _writeLoop;
    private readonly Task _readLoop;

    /// <summary>How long a failed write waits for the receiver's Error frame to be read.</summary>
    private static readonly TimeSpan ErrorFrameGrace = TimeSpan.FromSeconds(1);
    private readonly object _faultLock = new();
    private TunnelException? _fault;
    private byte[]? _current;
    private int _currentLength;
    private volatile bool _endSent;
    private bool _broken;
    private bool _finished;
    private int _disposed;

    internal TunnelSender(System.IO.Stream stream, SessionKeys keys, TunnelOptions options, ILogger logger)
    {
        _options = options;
        _logger = logger;
        _link = new FrameLink(stream, keys.SenderToReceiver, keys.ReceiverToSender, options, Stats);
        _payloadCapacity = options.Compress ? Math.Max(options.FrameSize, FrameEncoder.MaxOutput(options.FrameSize)) : options.FrameSize;
        if (options.Compress && options.Adaptive)
        {
            _chooser = new CodecChooser(options.Codecs ?? CodecChooser.AdaptiveSet);
            _encoder = new FrameEncoder();
        }
        _channel = Channel.CreateBounded<OutFrame>(new BoundedChannelOptions(options.MaxFramesInFlight)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        // A bucket shared with concurrent migrations, else one of its own.
        _bucket = options.SharedBandwidth ?? (options.BandwidthBytesPerSecond is long rate ? new SharedTokenBucket(rate) : null);

        _writeLoop = Task.Run(WriteLoopAsync);
        _readLoop = Task.Run(ReadLoopAsync);
    }

    public TunnelStats Stats { get; } = new();

    /// <summary>
    /// Where the destination QEMU's return path goes (Return frames, in order), when the receiver
    /// relays one; without it a Return frame fails the tunnel.
    /// </summary>
    public Func<ReadOnlyMemory<byte>, CancellationToken, ValueTask>? ReturnPath { get; set; }

    /// <summary>Connects to a <see cref="TunnelListener"/> and authenticates with <paramref name="token"/>.</summary>
    /// <exception cref="TunnelException">ConnectFailed, AuthenticationFailed, VersionMismatch, HandshakeTimeout, Closed.</exception>
    public static async Task<TunnelSender> ConnectAsync(string host, int port, MigrationToken token, TunnelOptions options, ILogger? logger, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(host);
        ArgumentNullException.ThrowIfNull(token);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        logger ??= NullLogger.Instance;
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        LimitUnsentBytes(socket, options.FrameSize);
        TcpLiveness.Apply(socket, options.IdleTimeout);
        using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        connectTimeout.CancelAfter(options.ConnectTimeout);
        try
        {
            await socket.ConnectAsync(host, port, connectTimeout.Token);
        }
        catch (OperationCanceledException ex) when (!ct.IsCancellationRequested)
        {
            socket.Dispose();
            throw new TunnelException(TunnelException.ConnectFailed, ErrorKind.ConnectionError,
                $"Cannot connect to the migration receiver at {host}:{port}: no answer within {options.ConnectTimeout.TotalSeconds:0.#} s (a firewall dropping packets, or the host is down).", ex)
            { Target = $"{host}:{port}" };
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw new TunnelException(TunnelException.ConnectFailed, ErrorKind.ConnectionError,
                $"Cannot connect to the migration receiver at {host}:{port}: {ex.Message}", ex)
            { Target = $"{host}:{port}" };
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var stream = new NetworkStream(socket, ownsSocket: true);
        try
        {
            SessionKeys keys = await HandshakeAsync(stream, token, options, ct);
            logger.LogInformation("Tunnel: connected to {Host}:{Port}", host, port);
            return new TunnelSender(stream, keys, options, logger);
        }
        catch
        {
            await stream.DisposeAsync();
            throw;
        }
    }

    /// <summary>Queues <paramref name="data"/>; waits while <see cref="TunnelOptions.MaxFramesInFlight"/> frames are already queued.</summary>
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        ThrowIfUnusable();
        while (!data.IsEmpty)
        {
            _current ??= Protocol.Rent(_payloadCapacity);
            int n = Math.Min(data.Length, _options.FrameSize - _currentLength);
            data.Span[..n].CopyTo(_current.AsSpan(Protocol.HeaderLength + _currentLength));
            _currentLength += n;
            data = data[n..];
            if (_currentLength == _options.FrameSize)
            {
                await EmitCurrentAsync(ct);
            }
        }
    }

    /// <summary>Queues the partial frame now (it does not wait for the bytes to reach the receiver).</summary>
    public async ValueTask FlushAsync(CancellationToken ct)
    {
        ThrowIfUnusable();
        if (_currentLength > 0)
        {
            await EmitCurrentAsync(ct);
        }
    }

    /// <summary>
    /// Before any data: tells the receiver what comes (Prepare) and returns its answer (Prepared),
    /// or throws the receiver's Error (it checked the destination and refused).
    /// </summary>
    public async Task<byte[]> PrepareAsync(ReadOnlyMemory<byte> request, CancellationToken ct)
    {
        ThrowIfUnusable();
        await _link.SendControlAsync(FrameType.Prepare, request, ct);
        return await ReplyAsync(FrameType.Prepared, ct);
    }

    /// <summary>
    /// Sends what is buffered and the End frame, then waits for Loaded: every byte reached the
    /// destination (and, in a migration, the destination QEMU loaded it and is held paused).
    /// Returns Loaded's payload.
    /// </summary>
    public async Task<byte[]> CompleteAsync(CancellationToken ct)
    {
        await FlushAsync(ct);
        _endSent = true;
        await EnqueueAsync(new OutFrame(FrameType.End, 0, Protocol.Rent(0), 0), ct);
        _channel.Writer.TryComplete();
        await _writeLoop.WaitAsync(ct);
        var loaded = await ReplyAsync(FrameType.Loaded, ct);
        _logger.LogInformation("Tunnel: sent {Stats}", Stats);
        return loaded;
    }

    /// <summary>After Loaded: tells the receiver to run the destination; returns Running's payload.</summary>
    public async Task<byte[]> CommitAsync(CancellationToken ct)
    {
        await _link.SendControlAsync(FrameType.Commit, ReadOnlyMemory<byte>.Empty, ct);
        var running = await ReplyAsync(FrameType.Running, ct);
        _finished = true;
        return running;
    }

    private async Task<byte[]> ReplyAsync(FrameType expected, CancellationToken ct)
    {
        Reply reply;
        try
        {
            reply = await _replies.Reader.ReadAsync(ct);
        }
        catch (ChannelClosedException)
        {
            throw Fault();
        }

        return reply.Type == expected ? reply.Payload
            : throw TunnelException.Corruption($"The receiver sent {reply.Type} where {expected} was expected.");
    }

    /// <summary>Best effort: drops buffered data, tells the receiver <paramref name="message"/> in an Error frame, and closes.</summary>
    public async Task FailAsync(string message)
    {
        if (_finished || _disposed != 0)
        {
            return;
        }

        _broken = true;
        SetFault(TunnelException.ClosedEarly($"The tunnel was failed by this side: {message}"));
        if (_current is not null)
        {
            Protocol.Return(_current);
            _current = null;
            _currentLength = 0;
        }

        if (_writeLoop.IsCompleted)
        {
            // After End the data channel is closed: the Error goes straight out.
            await _link.TrySendErrorAsync(message, FailTimeout);
            await DisposeAsync();
            return;
        }

        try
        {
            using var timeout = new CancellationTokenSource(FailTimeout);
            byte[] buffer = Protocol.RentErrorFrame(message, out int length);
            if (!_channel.Writer.TryWrite(new OutFrame(FrameType.Error, 0, buffer, length)))
            {
                try
                {
                    await _channel.Writer.WriteAsync(new OutFrame(FrameType.Error, 0, buffer, length), timeout.Token);
                }
                catch
                {
                    Protocol.Return(buffer);
                    throw;
                }
            }

            _channel.Writer.TryComplete();
            await _writeLoop.WaitAsync(timeout.Token);
        }
        catch (Exception ex)
        {
            _logger.LogDebug("Tunnel: could not send the error to the receiver: {Reason}", ex.Message);
        }

        await DisposeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _lifetime.Cancel();
        _channel.Writer.TryComplete();
        // Closing the link first unblocks a loop stuck in a socket call; the loops never throw.
        await _link.DisposeAsync();
        await _writeLoop;
        await _readLoop;
        if (_current is not null)
        {
            Protocol.Return(_current);
            _current = null;
        }

        _encoder?.Dispose();
        _lifetime.Dispose();
    }

    internal static async Task<SessionKeys> HandshakeAsync(System.IO.Stream stream, MigrationToken token, TunnelOptions options, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(options.HandshakeTimeout);
        try
        {
            return await Handshake.ClientAsync(stream, token, timeout.Token);
        }
        catch (OperationCanceledException ex) when (!ct.IsCancellationRequested)
        {
            throw new TunnelException(TunnelException.HandshakeTimeout, ErrorKind.OperationTimeout,
                $"The migration receiver did not finish the tunnel handshake within {options.HandshakeTimeout.TotalSeconds:0.#} s.", ex);
        }
    }

    private int _incompressibleRun;

    /// <summary>
    /// Linux grows a TCP send buffer to megabytes; bytes waiting there are downtime in the final
    /// copy and inflate QEMU's bandwidth estimate. TCP_NOTSENT_LOWAT caps what waits unsent while
    /// leaving the in-flight window free to grow with the link's bandwidth-delay product.
    /// </summary>
    private static void LimitUnsentBytes(Socket socket, int frameSize)
    {
        const int IpProtoTcp = 6;
        const int TcpNotSentLowat = 25;
        if (OperatingSystem.IsLinux())
        {
            try
            {
                socket.SetRawSocketOption(IpProtoTcp, TcpNotSentLowat, BitConverter.GetBytes(Math.Max(frameSize, 64 * 1024)));
            }
            catch (SocketException)
            {
                // an older kernel: the send buffer keeps its default behaviour
            }
        }
    }

    private bool SampleCompresses(ReadOnlySpan<byte> payload)
    {
        const int Sample = 4096;
        if (payload.Length <= Sample * 2)
        {
            return true;
        }

        Span<byte> packed = stackalloc byte[LZ4Codec.MaximumOutputSize(Sample)];
        long started = Stopwatch.GetTimestamp();
        int length = LZ4Codec.Encode(payload[..Sample], packed, LZ4Level.L00_FAST);
        Stats.AddCompressTicks(Stopwatch.GetTimestamp() - started);
        if (length > 0 && length < Sample * 15 / 16)
        {
            return true;
        }

        _incompressibleRun++;
        return false;
    }

    private async ValueTask EmitCurrentAsync(CancellationToken ct)
    {
        byte[] raw = _current!;
        int length = _currentLength;
        _current = null;
        _currentLength = 0;
        var frame = new OutFrame(FrameType.Data, 0, raw, length);
        if (_chooser is not null)
        {
            await EnqueueAsync(PackAdaptive(frame), ct);
            return;
        }

        // After frames LZ4 could not shrink (random memory), first try a 4 KiB sample: a failed
        // full compression costs as much as a good one, a failed sample a sixteenth of it.
        if (_options.Compress && (_incompressibleRun < 2 || SampleCompresses(raw.AsSpan(Protocol.HeaderLength, length))))
        {
            byte[] packed = Protocol.Rent(_payloadCapacity);
            long started = Stopwatch.GetTimestamp();
            int packedLength = LZ4Codec.Encode(
                raw.AsSpan(Protocol.HeaderLength, length),
                packed.AsSpan(Protocol.HeaderLength, _payloadCapacity),
                LZ4Level.L00_FAST);
            Stats.AddCompressTicks(Stopwatch.GetTimestamp() - started);
            var pays = packedLength > 0 && packedLength < length;
            _incompressibleRun = pays ? 0 : _incompressibleRun + 1;
            if (pays)
            {
                Protocol.Return(raw);
                frame = new OutFrame(FrameType.Data, Protocol.FlagLz4, packed, packedLength, length, CodecOption.Lz4);
            }
            else
            {
                Protocol.Return(packed);
            }
        }

        await EnqueueAsync(frame, ct);
    }

    /// <summary>Packs a raw Data frame with the chooser's codec (and, now and then, a probe of another); keeps the smallest.</summary>
    private OutFrame PackAdaptive(OutFrame frame)
    {
        CodecOption chosen;
        CodecOption? probe;
        lock (_chooser!)
        {
            chosen = _chooser.Choose();
            probe = _chooser.NextProbe(chosen);
        }

        OutFrame best = frame;
        foreach (CodecOption option in probe is { } p ? [chosen, p] : new[] { chosen })
        {
            if (option.Codec == WireCodec.Raw)
            {
                continue;
            }

            byte[] packed = Protocol.Rent(_payloadCapacity);
            long started = Stopwatch.GetTimestamp();
            int length = _encoder!.Encode(option, frame.Buffer.AsSpan(Protocol.HeaderLength, frame.RawLength), packed.AsSpan(Protocol.HeaderLength, _payloadCapacity));
            long ticks = Stopwatch.GetTimestamp() - started;
            Stats.AddCompressTicks(ticks);
            lock (_chooser)
            {
                _chooser.ObserveEncode(option, frame.RawLength, length > 0 ? length : frame.RawLength, (double)ticks / Stopwatch.Frequency);
            }

            if (length > 0 && length < best.PayloadLength)
            {
                if (best.Buffer != frame.Buffer)
                {
                    Protocol.Return(best.Buffer);
                }

                best = new OutFrame(FrameType.Data, (byte)option.Codec, packed, length, frame.RawLength, option);
            }
            else
            {
                Protocol.Return(packed);
            }
        }

        if (best.Buffer != frame.Buffer)
        {
            Protocol.Return(frame.Buffer);
        }

        return best;
    }

    /// <summary>The link took <paramref name="wire"/> bytes in <paramref name="ticks"/> of pacing and sending; no faster than the pacer allows.</summary>
    private void ObserveDrain(int wire, long ticks)
    {
        double seconds = (double)ticks / Stopwatch.Frequency;
        if (_bucket is not null)
        {
            seconds = Math.Max(seconds, (double)wire / _bucket.BytesPerSecond);
        }

        lock (_chooser!)
        {
            _chooser.ObserveDrain(wire, seconds);
        }
    }

    private async ValueTask EnqueueAsync(OutFrame frame, CancellationToken ct)
    {
        try
        {
            await _channel.Writer.WriteAsync(frame, ct);
        }
        catch (OperationCanceledException)
        {
            Protocol.Return(frame.Buffer);
            _broken = true;
            throw;
        }
        catch (ChannelClosedException)
        {
            Protocol.Return(frame.Buffer);
            throw Fault();
        }
    }

    private async Task WriteLoopAsync()
    {
        CancellationToken ct = _lifetime.Token;
        try
        {
            while (await _channel.Reader.WaitToReadAsync(ct))
            {
                while (_channel.Reader.TryRead(out OutFrame frame))
                {
                    try
                    {
                        long started = Stopwatch.GetTimestamp();
                        if (_bucket is not null)
                        {
                            TimeSpan wait = _bucket.Take(Protocol.HeaderLength + frame.PayloadLength + Protocol.TagLength);
                            if (wait > TimeSpan.Zero)
                            {
                                await Task.Delay(wait, ct);
                            }
                        }

                        int wire = await _link.SendAsync(frame.Buffer, frame.Type, frame.Flags, frame.PayloadLength, frame.RawLength, ct);
                        if (frame.Type == FrameType.Data)
                        {
                            Stats.AddDataFrame(frame.RawLength, frame.Codec, wire);
                            if (_chooser is not null)
                            {
                                ObserveDrain(wire, Stopwatch.GetTimestamp() - started);
                            }
                        }
                    }
                    finally
                    {
                        Protocol.Return(frame.Buffer);
                    }
                }
            }
        }
        catch (Exception ex)
        {
            // A receiver that fails sends an Error frame and closes, so our next write can meet a reset
            // before the read loop has read that frame: give it a moment, its reason beats "connection reset".
            if (ex is not OperationCanceledException && _readLoop is not null)
            {
                await Task.WhenAny(_readLoop, Task.Delay(ErrorFrameGrace));
            }

            Abort(ex is OperationCanceledException
                ? TunnelException.ClosedEarly("The tunnel was closed before the transfer finished.", ex)
                : ex as TunnelException ?? TunnelException.ClosedEarly($"The tunnel failed: {ex.Message}", ex));
            while (_channel.Reader.TryRead(out OutFrame frame))
            {
                Protocol.Return(frame.Buffer);
            }
        }
    }

    private async Task ReadLoopAsync()
    {
        try
        {
            while (true)
            {
                Frame frame = await _link.ReadAsync(_lifetime.Token);
                switch (frame.Type)
                {
                    case FrameType.Prepared or FrameType.Loaded or FrameType.Running:
                        _replies.Writer.TryWrite(new Reply(frame.Type, frame.Payload.ToArray()));
                        break;
                    case FrameType.Error:
                        Abort(TunnelException.Remote($"The receiver failed: {Protocol.DecodeErrorMessage(frame.Payload.Span)}"));
                        return;
                    case FrameType.Return when ReturnPath is { } returnPath:
                        await returnPath(frame.Payload, _lifetime.Token);
                        break;
                    default:
                        Abort(TunnelException.Corruption($"The receiver sent an unexpected {frame.Type} frame."));
                        return;
                }
            }
        }
        catch (Exception ex)
        {
            Abort(ex is OperationCanceledException
                ? TunnelException.ClosedEarly("The tunnel was closed before the receiver confirmed the transfer.", ex)
                : ex as TunnelException ?? TunnelException.ClosedEarly($"The tunnel failed: {ex.Message}", ex));
        }
    }

    /// <summary>Records the first failure, stops both loops and wakes anyone waiting.</summary>
    private void Abort(TunnelException ex)
    {
        SetFault(ex);
        _channel.Writer.TryComplete();
        _replies.Writer.TryComplete();
        try
        {
            _lifetime.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Already disposed: nothing left to stop.
        }
    }

    private void SetFault(TunnelException ex)
    {
        lock (_faultLock)
        {
            _fault ??= ex;
        }
    }

    /// <summary>A fresh exception (own stack trace) carrying the first failure.</summary>
    private TunnelException Fault()
    {
        TunnelException fault;
        lock (_faultLock)
        {
            fault = _fault ?? TunnelException.ClosedEarly("The tunnel is closed.");
        }

        return new TunnelException(fault.ErrorId, fault.Kind, fault.Message, fault);
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (_endSent)
        {
            throw new InvalidOperationException("The tunnel is already complete.");
        }

        if (_fault is not null)
        {
            throw Fault();
        }

        if (_broken)
        {
            throw new InvalidOperationException("A cancelled write left the tunnel unusable.");
        }
    }

    private readonly record struct Reply(FrameType Type, byte[] Payload);

    private readonly record struct OutFrame(FrameType Type, byte Flags, byte[] Buffer, int PayloadLength, int RawLength, CodecOption Codec)
    {
        public OutFrame(FrameType type, byte flags, byte[] buffer, int length)
            : this(type, flags, buffer, length, length, CodecOption.Raw)
        {
        }
    }
}
