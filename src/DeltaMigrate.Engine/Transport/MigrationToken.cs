using System.Security.Cryptography;

namespace DeltaMigrate.Engine.Transport;

/// <summary>
/// A one-time secret the receiver creates and hands to the sender (out of band). Both sides prove
/// knowledge of it in the tunnel handshake; it never crosses the wire. Text form: 32 random bytes, base64url.
/// </summary>
public sealed class MigrationToken
{
    public const int SecretLength = 32;

    private readonly byte[] _secret;

    private MigrationToken(byte[] secret) => _secret = secret;

    internal ReadOnlySpan<byte> Secret => _secret;

    public static MigrationToken Create() => new(RandomNumberGenerator.GetBytes(SecretLength));

    /// <summary>Parses the text form made by <see cref="ToString"/>.</summary>
    /// <exception cref="EngineException">InvalidMigrationToken when the text is not a token.</exception>
    public static MigrationToken Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string trimmed = text.Trim();
        // 32 bytes = 43 base64url characters without padding.
        if (trimmed.Length != 43)
        {
            throw InvalidToken();
        }

        string base64 = trimmed.Replace('-', '+').Replace('_', '/') + "=";
        var secret = new byte[SecretLength];
        if (!Convert.TryFromBase64String(base64, secret, out int written) || written != SecretLength)
        {
            throw InvalidToken();
        }

        return new MigrationToken(secret);
    }

    public override string ToString() => Convert.ToBase64String(_secret).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static EngineException InvalidToken() =>
        new("InvalidMigrationToken", ErrorKind.InvalidArgument, "The migration token is not valid: expected the 43-character text the receiver printed.");
}
