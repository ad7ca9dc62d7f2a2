using System.Security.Cryptography;

namespace DeltaMigrate.Engine.Transport;

/// <summary>
/// A one-time secret the receiver creates and hands to the sender (out of band). It authenticates the
/// tunnel's ephemeral key exchange; it never crosses the wire. Text form: 32 random bytes, base64url.
/// </summary>
public sealed class MigrationToken
{
    public const int SecretLength = 32;

    // 32 random bytes show ~30 distinct values; fewer than 16 happens with probability 3.2e-17
    // (sum over k < 16 of 256!/(256-k)! * S(32, k) / 256^32), so a secret like that was typed, not drawn.
    private const int MinDistinctBytes = 16;

    private readonly byte[] _secret;

    private MigrationToken(byte[] secret) => _secret = secret;

    internal ReadOnlySpan<byte> Secret => _secret;

    public static MigrationToken Create()
    {
        while (true)
        {
            // Draw again in the 3.2e-17 case that Parse would refuse, so a created token always parses.
            byte[] secret = RandomNumberGenerator.GetBytes(SecretLength);
            if (LooksRandom(secret))
            {
                return new MigrationToken(secret);
            }
        }
    }

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

        if (!LooksRandom(secret))
        {
            throw new EngineException("InvalidMigrationToken", ErrorKind.InvalidArgument,
                "The migration token is not random enough (too few distinct bytes); it must be 32 random bytes. Use the token Receive-KvmVM printed, or leave out -Token so Receive-KvmVM makes one.");
        }

        return new MigrationToken(secret);
    }

    public override string ToString() => Convert.ToBase64String(_secret).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static bool LooksRandom(ReadOnlySpan<byte> secret)
    {
        Span<bool> seen = stackalloc bool[256];
        int distinct = 0;
        foreach (byte b in secret)
        {
            if (!seen[b])
            {
                seen[b] = true;
                distinct++;
            }
        }

        return distinct >= MinDistinctBytes;
    }

    private static EngineException InvalidToken() =>
        new("InvalidMigrationToken", ErrorKind.InvalidArgument, "The migration token is not valid: expected the 43-character text the receiver printed.");
}
