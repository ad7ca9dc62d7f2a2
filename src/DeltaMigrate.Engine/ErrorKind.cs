namespace DeltaMigrate.Engine;

/// <summary>What kind of failure, so the module can pick a PowerShell error category.</summary>
public enum ErrorKind
{
    NotFound,
    InvalidArgument,
    InvalidState,
    ConnectionError,
    OperationTimeout,
    OperationStopped,
    NotImplemented,
    ResourceUnavailable,
    ProtocolError,
}
