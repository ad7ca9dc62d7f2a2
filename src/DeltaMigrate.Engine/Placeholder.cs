namespace DeltaMigrate.Engine;

internal static class Placeholder
{
}
