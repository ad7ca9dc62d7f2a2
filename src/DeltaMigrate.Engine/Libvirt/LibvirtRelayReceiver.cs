using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using DeltaMigrate.Engine.Logging;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Transport;
using DeltaMigrate.Engine.Tunnel;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeltaMigrate.Engine.Libvirt;

/// <summary>
/// The destination host's half of a libvirt migration through our tunnel: it listens for our sender,
/// waits for the unix socket libvirt's prepare makes the destination QEMU listen on, and relays the
/// stream into it (and QEMU's return path back). libvirt owns that QEMU: it starts, checks, runs or
/// kills it; this half never talks to its monitor.
/// </summary>
public sealed class LibvirtRelayReceiver(string qemuSocketPath, IPEndPoint listen, MigrationToken? token, ILogger? logger = null)
{
    private readonly ILogger _logger = logger ?? NullLogger.Instance;

    /// <summary>The same, logging to a host's <see cref="IEngineLogSink"/> (the cmdlets: no logging types cross into PowerShell's load context).</summary>
    public LibvirtRelayReceiver(string qemuSocketPath, IPEndPoint listen, MigrationToken? token, IEngineLogSink log)
        : this(qemuSocketPath, listen, token, SinkLogger.From(log))
    {
    }

    /// <summary>The tunnel's idle deadline.</summary>
    public TimeSpan LinkTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How long libvirt's prepare may take to make the destination QEMU listen, once our sender is in.</summary>
    public TimeSpan PrepareTimeout { get; init; } = TimeSpan.FromSeconds(60);

    public async Task<ReceiveResult> RunAsync(Action<ReceiverReady> ready, TimeSpan? acceptTimeout, CancellationToken cancellationToken)
    {
        string name = Path.GetFileName(qemuSocketPath);
        new Vm.RunDirectory(Path.GetDirectoryName(qemuSocketPath)!).EnsureSecure();
        var secret = token ?? MigrationToken.Create();
        await using var listener = TunnelListener.Start(listen, secret, _logger, new TunnelOptions().WithLinkTimeout(LinkTimeout));
        var shown = listener.LocalEndpoint.Address.Equals(IPAddress.Any) ? $"{Dns.GetHostName()}:{listener.LocalEndpoint.Port}" : listener.LocalEndpoint.ToString();
        ready(new ReceiverReady(name, shown, secret.ToString()));

        IncomingTunnel tunnel;
        using (var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            if (acceptTimeout is { } limit)
            {
                wait.CancelAfter(limit);
            }

            try
            {
                tunnel = await listener.AcceptAsync(wait.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new EngineException("ReceiveTimedOut", ErrorKind.OperationTimeout,
                    $"No migration arrived for {qemuSocketPath} within {acceptTimeout!.Value.TotalSeconds:0} s.")
                { Target = qemuSocketPath };
            }
        }

        var started = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();
        await using (tunnel)
        {
            Socket qemu;
            try
            {
                qemu = await ConnectToQemuAsync(cancellationToken);
            }
            catch (Exception ex) when (!IncomingTunnel.SenderGone(ex))
            {
                await tunnel.TrySendErrorAsync(ex.Message);
                throw;
            }

            using (qemu)
            {
                await using var toQemu = new NetworkStream(qemu, ownsSocket: false);
                using var relaying = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                var returnPath = RelayReturnPathAsync(qemu, tunnel, relaying.Token);
                try
                {
                    var stats = await tunnel.PumpAsync(toQemu, cancellationToken);
                    await tunnel.SendAsync(TunnelFrame.Loaded, ReadOnlyMemory<byte>.Empty, cancellationToken);
                    return new ReceiveResult
                    {
                        VMName = name,
                        Status = MigrationStatus.Completed,
                        DestinationState = "libvirt",
                        TotalTime = clock.Elapsed,
                        StreamBytes = stats.PayloadBytes,
                        WireBytes = stats.WireBytes,
                        StartTime = started,
                        EndTime = DateTimeOffset.UtcNow,
                    };
                }
                catch (Exception ex) when (!IncomingTunnel.SenderGone(ex))
                {
                    _logger.LogWarning("libvirt relay: receiving failed after {Stats}: {Reason}", tunnel.Stats, ex.Message);
                    await tunnel.TrySendErrorAsync(ex.Message);
                    throw;
                }
                finally
                {
                    // A cut relay closes QEMU's stream: its incoming migration fails and libvirt cleans up.
                    await relaying.CancelAsync();
                    qemu.Shutdown(SocketShutdown.Both);
                    await returnPath;
                }
            }
        }
    }

    /// <summary>libvirt's prepare makes QEMU listen at the path; until then it is missing or refuses.</summary>
    private async Task<Socket> ConnectToQemuAsync(CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(qemuSocketPath), cancellationToken);
                _logger.LogDebug("libvirt relay: connected to the destination QEMU at {Path} after {Elapsed}", qemuSocketPath, deadline.Elapsed);
                return socket;
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.AddressNotAvailable or SocketError.ConnectionRefused or SocketError.AddressFamilyNotSupported
                or SocketError.InvalidArgument || !File.Exists(qemuSocketPath))
            {
                socket.Dispose();
                if (deadline.Elapsed > PrepareTimeout)
                {
                    throw new EngineException("LibvirtPrepareTimeout", ErrorKind.OperationTimeout,
                        $"The destination QEMU did not listen at {qemuSocketPath} within {PrepareTimeout.TotalSeconds:0} s of our sender's arrival ({ex.Message}): libvirt's prepare on this host failed or hangs; see its log.")
                    { Target = qemuSocketPath };
                }

                // Polling the file system is the only signal: libvirt tells nobody but the source when QEMU listens.
                await Task.Delay(TimeSpan.FromMilliseconds(50), cancellationToken);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }

    private async Task RelayReturnPathAsync(Socket qemu, IncomingTunnel tunnel, CancellationToken cancellationToken)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            int read;
            while ((read = await qemu.ReceiveAsync(buffer, SocketFlags.None, cancellationToken)) > 0)
            {
                await tunnel.SendReturnAsync(buffer.AsMemory(0, read), cancellationToken);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException or TunnelException)
        {
            _logger.LogDebug("libvirt relay: the return path ended: {Reason}", ex.Message);
        }
    }
}
