namespace DeltaMigrate.Engine.Tunnel;

/// <summary>The migration tunnel failed: authentication, integrity, a cut connection, or the other side gave up.</summary>
public class TunnelException : EngineException
{
    /// <summary>The peer could not prove it holds the migration token (or we could not prove it to the peer).</summary>
    public const string AuthenticationFailed = "TunnelAuthenticationFailed";

    /// <summary>A frame failed its integrity check, arrived out of order, or is malformed.</summary>
    public const string Corrupt = "TunnelCorrupt";

    /// <summary>The connection ended before the transfer completed.</summary>
    public const string Closed = "TunnelClosed";

    /// <summary>The other side reported a failure (its message is carried).</summary>
    public const string RemoteError = "TunnelRemoteError";

    /// <summary>The peer speaks another tunnel protocol version, or is not a tunnel at all.</summary>
    public const string VersionMismatch = "TunnelVersionMismatch";

    /// <summary>The sender could not connect to the receiver.</summary>
    public const string ConnectFailed = "TunnelConnectFailed";

    /// <summary>The handshake did not finish in time.</summary>
    public const string HandshakeTimeout = "TunnelHandshakeTimeout";

    /// <summary>The other end sent nothing (not even a keepalive) within the idle timeout.</summary>
    public const string IdleTimeout = "TunnelIdleTimeout";

    public TunnelException(string errorId, ErrorKind kind, string message, Exception? inner = null)
        : base(errorId, kind, message, inner)
    {
    }

    internal static TunnelException Auth(string message, Exception? inner = null) => new(AuthenticationFailed, ErrorKind.ConnectionError, message, inner);

    internal static TunnelException Corruption(string message) => new(Corrupt, ErrorKind.ProtocolError, message);

    internal static TunnelException ClosedEarly(string message, Exception? inner = null) => new(Closed, ErrorKind.ConnectionError, message, inner);

    internal static TunnelException Remote(string message) => new(RemoteError, ErrorKind.OperationStopped, message);

    internal static TunnelException Idle(string message, Exception? inner = null) => new(IdleTimeout, ErrorKind.OperationTimeout, message, inner);

    internal static TunnelException Version(string message) => new(VersionMismatch, ErrorKind.ProtocolError, message);
}
