using System.Management.Automation;
using System.Net;
using System.Security;

namespace DeltaMigrate.Module.Infrastructure;

/// <summary>
/// Lets a -Token parameter take a SecureString (Read-Host -AsSecureString, a vault) as well as the
/// text Receive-KvmVM printed; either way the token is parsed, and checked, once, by the engine.
/// </summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class TokenAttribute : ArgumentTransformationAttribute
{
    public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
    {
        var value = inputData is PSObject pso ? pso.BaseObject : inputData;
        return value is SecureString secure ? new NetworkCredential(string.Empty, secure).Password : inputData;
    }
}
